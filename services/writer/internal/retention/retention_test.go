package retention

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

func TestKeepFrom(t *testing.T) {
	gen := func(g uint64) *schema.GenerationState { return &schema.GenerationState{Generation: g} }
	for _, c := range []struct {
		name string
		s    schema.DatasetState
		want uint64
	}{
		{"no generation yet", schema.DatasetState{}, 0},
		{"first sync building", schema.DatasetState{Building: gen(1)}, 0},
		{"current only", schema.DatasetState{Current: gen(40)}, 40},
		{"a sync building after it", schema.DatasetState{Current: gen(40), Building: gen(90)}, 40},
		{"building older than current", schema.DatasetState{Current: gen(40), Building: gen(12)}, 12},
	} {
		if got := KeepFrom(c.s); got != c.want {
			t.Errorf("%s: KeepFrom = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestApplyKeepsTheCurrentGenerationOnly publishes three syncs of one
// dataset and one of another, then applies the state after the third
// commit: the stream keeps the third sync and the other dataset, nothing
// else, and applying it again sends no purge.
func TestApplyKeepsTheCurrentGenerationOnly(t *testing.T) {
	srv := jstest.Start(t)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := schema.EnsureStream(ctx, js, schema.StreamOptions{Name: schema.DefaultStream, MaxBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(ds string) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, schema.Subject(ds), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	var begins []uint64
	for range 3 {
		begins = append(begins, publish("products"))
		publish("orders")
		for range 5 {
			publish("products")
		}
	}
	last := publish("products")

	p := New(func() jetstream.Stream { return stream }, nil)
	st := schema.DatasetState{Dataset: "products", Current: &schema.GenerationState{Generation: begins[2]}}
	if err := p.Apply(ctx, st); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("rows.>"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.State.Subjects["rows.products"], uint64(1+5+1); got != want { // begin, 5 rows, last
		t.Errorf("rows.products holds %d messages, want %d (the current generation's)", got, want)
	}
	if got := info.State.Subjects["rows.orders"]; got != 3 {
		t.Errorf("rows.orders holds %d messages, want its 3: another dataset was purged", got)
	}
	if m, err := stream.GetMsg(ctx, begins[2]); err != nil || m.Subject != "rows.products" {
		t.Errorf("the current generation's begin (seq %d) is gone: %v", begins[2], err)
	}
	if _, err := stream.GetMsg(ctx, begins[2]-2); err == nil {
		t.Errorf("seq %d, a row of the superseded sync, is still there", begins[2]-2)
	}

	// The same point again sends no purge: a stream that refuses every
	// request shows it.
	dead := New(func() jetstream.Stream { return nil }, nil)
	dead.done["products"] = begins[2]
	if err := dead.Apply(ctx, st); err != nil {
		t.Errorf("Apply at an unchanged point: %v", err)
	}
	st.Current.Generation = last
	if err := dead.Apply(ctx, st); err == nil {
		t.Error("Apply at a new point without a stream returned nil")
	}
}
