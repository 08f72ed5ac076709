package jstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

func TestRestartKeepsTheStoreAndTheConnection(t *testing.T) {
	srv := jstest.Start(t)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	// The same connection reconnects; the message is still in the store.
	var got []byte
	for got == nil && ctx.Err() == nil {
		// A request sent while the restarted server is still bringing
		// JetStream up can go unanswered: give each try its own deadline.
		try, stop := context.WithTimeout(ctx, time.Second)
		s, err := js.Stream(try, "T")
		if err == nil {
			var m *jetstream.RawStreamMsg
			if m, err = s.GetMsg(try, 1); err == nil {
				got = m.Data
			}
		}
		stop()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if string(got) != "kept" {
		t.Fatalf("after Restart the stream holds %q (%v)", got, ctx.Err())
	}
	if srv.URL() != nc.ConnectedUrl() {
		t.Errorf("connected to %q, URL() is %q", nc.ConnectedUrl(), srv.URL())
	}
}
