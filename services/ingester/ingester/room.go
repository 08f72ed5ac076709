package ingester

import (
	"context"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
)

// sampleBytes is how much of a file source the room check reads to learn
// how many stream bytes a CSV byte becomes (a 4 MiB sample keeps the
// reader's read-ahead under 2 % of it).
const sampleBytes = 4 << 20

// checkRoom refuses (ErrRefused) a sync that cannot fit in the stream,
// before anything is published: the source's size is known (a file, a
// Content-Length) and the stream has a byte limit. The room is the limit
// less what the stream holds, the current generation included, which the
// writer purges only once the new one is committed. A file's need is
// estimated from a sample of its rows encoded as they will be published;
// for a URL the CSV's own size is used, a lower bound (every byte of a row
// is in its message).
func (g *ingester) checkRoom(ctx context.Context, in *csvsource.Input, fields []string, sync string) error {
	if in.Size <= 0 {
		return nil
	}
	var info *jetstream.StreamInfo
	err := retry(ctx, g.cfg.PublishGiveUp, g.log, "read the stream's size", func(ctx context.Context) error {
		s, err := g.js.Stream(ctx, g.cfg.Stream)
		if err == nil {
			info, err = s.Info(ctx)
		}
		return err
	})
	if err != nil {
		return err
	}
	limit := info.Config.MaxBytes
	if limit <= 0 {
		return nil
	}
	need := in.Size
	if in.Kind == csvsource.File {
		if need, err = g.estimateStreamBytes(ctx, in, fields, sync); err != nil {
			return g.refused(ctx, err)
		}
	}
	free := limit - int64(info.State.Bytes)
	if need <= free {
		return nil
	}
	held := int64(info.State.Bytes)
	return fmt.Errorf("%w: %s: the sync needs about %s of stream %s, which has %s free: it holds %s of its STREAM_MAX_BYTES=%d "+
		"(the current generation stays until the new one commits); set STREAM_MAX_BYTES to at least %d on the writer, which applies it to the stream "+
		"(and the NATS server's max_file_store with it); nothing was published",
		ErrRefused, in.Name, humanBytes(need), g.cfg.Stream, humanBytes(max(free, 0)), humanBytes(held), limit, held+need+need/10)
}

// estimateStreamBytes reads the file source again, up to sampleBytes, and
// scales the stream bytes its rows take (schema.StoredBytes, with the
// headers they will carry) to the whole file; a file read to its end in
// the sample is counted exactly.
func (g *ingester) estimateStreamBytes(ctx context.Context, in *csvsource.Input, fields []string, sync string) (int64, error) {
	f, err := csvsource.Open(ctx, in.Name, csvsource.OpenOptions{})
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := csvsource.NewReader(f, in.Name, g.csv)
	if err != nil {
		return 0, err
	}
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		return 0, err
	}
	subject := schema.Subject(g.cfg.Dataset)
	overhead := func(ev schema.Event, row uint64, body int) int64 {
		env := schema.Envelope{Event: ev, Sync: sync, Row: row}
		return schema.StoredBytes(subject, env.Headers(), body)
	}
	start := rd.BytesRead()
	frame := overhead(schema.EventBegin, 0, 4<<10) + overhead(schema.EventEnd, 0, 1<<10)
	var stored int64
	var buf []byte
	for row := uint64(1); ; row++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		rec, err := rd.Read()
		if err == io.EOF {
			return frame + stored, nil
		}
		if err != nil {
			if asRowError(err) == nil {
				return 0, err
			}
			continue // a bad row: its reject message is about its size
		}
		if buf, err = enc.Append(buf[:0], rec); err != nil {
			continue
		}
		stored += overhead(schema.EventRow, row, len(buf))
		if read := rd.BytesRead() - start; read >= sampleBytes {
			return frame + int64(float64(stored)/float64(read)*float64(in.Size-start)), nil
		}
	}
}

// humanBytes formats n with a binary unit, e.g. "1.5 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
