package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/rowpipe/rowpipe/services/api/internal/find"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// findPageBytes ends a filtered page early once its records reach this
// size (after one record at least); the page says where the next starts.
// A filtered page is built whole (its envelope says how far a scan got,
// so it is known only at the end), so this bounds its memory.
const findPageBytes = 1 << 20

// wantsFind reports whether the request filters or projects records
// (package find's parameters), which s.find answers.
func wantsFind(c *fiber.Ctx) bool {
	found := false
	c.Context().QueryArgs().VisitAll(func(k, _ []byte) {
		found = found || bytes.HasPrefix(k, []byte(find.FilterPrefix)) ||
			string(k) == find.FieldsParam || string(k) == find.CursorParam
	})
	return found
}

// findHead is the JSON envelope of a filtered page, data last: the
// contract's page envelope, with count null when a scan cannot know it,
// and scan set when records were tested one by one.
type findHead struct {
	Dataset    string    `json:"dataset"`
	Generation uint64    `json:"generation"`
	Count      *uint64   `json:"count"`
	Offset     uint64    `json:"offset"`
	Limit      int       `json:"limit"`
	Returned   int       `json:"returned"`
	NextOffset *uint64   `json:"next_offset"`
	Scan       *findScan `json:"scan,omitempty"`
}

type findScan struct {
	// Index names the field whose lookup index chose the records
	// scanned; omitted when every record was a candidate.
	Index      string  `json:"index,omitempty"`
	Scanned    uint64  `json:"scanned"`
	ScanLimit  uint64  `json:"scan_limit"`
	NextCursor *string `json:"next_cursor"`
}

// find answers a page with equality filters, a projection or a cursor
// (package find): from a lookup index in O(1) when the filtered field has
// one, by a scan of at most ScanLimit records otherwise. It holds one
// record at a time and the page.
func (s *Server) find(c *fiber.Ctx, name string, p params.Page, route string) error {
	args := c.Context().QueryArgs()
	pin, err := cursorPin(args, p.Generation)
	if err != nil {
		return err
	}
	lease, err := s.store.Acquire(name, pin)
	if err != nil {
		return s.storeError(err, name, pin)
	}
	defer lease.Release()
	h := &lease.Header
	// The answer is a function of the generation's state and the query.
	tag := appendETag(nil, name, h, p.Offset, p.Limit, string(p.Format)+"?"+utils.UnsafeString(args.QueryString()))
	gz := acceptsGzip(c.Get(fiber.HeaderAcceptEncoding))
	hdr := &c.Response().Header
	hdr.Set(fiber.HeaderCacheControl, "private, no-cache")
	hdr.Set(fiber.HeaderVary, "Accept, Accept-Encoding")
	if gz {
		hdr.SetBytesV(fiber.HeaderETag, appendGzipTag(nil, tag))
	} else {
		hdr.SetBytesV(fiber.HeaderETag, tag)
	}
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	indexes, release, err := lease.Lookups(c.Context().Time())
	defer release()
	if indexes == nil { // the header's fields make no record decoder
		_, err := find.NewShape(h.Fields)
		return s.unreadable(name, h.Generation, fmt.Errorf("the fields of the header: %w", err))
	}
	if err != nil {
		s.log.Warn("a lookup index is left out: its field is scanned instead", "dataset", name, "generation", h.Generation, "err", err)
	}
	req, qe := find.Parse(indexes.Shape(), queryPairs(args))
	if qe != nil {
		code := "invalid_parameter"
		if qe.Fields != nil {
			code = "unknown_field"
		}
		return &respond.Error{Status: http.StatusBadRequest, Code: code, Message: qe.Message}
	}
	gen := find.Gen{Header: *h, Data: lease, Index: lease, Indexes: indexes}
	buf := findBufs.Get().(*[]byte)
	defer findBufs.Put(buf)
	lines := (*buf)[:0]
	res, err := find.Run(gen, req, find.Page{Limit: p.Limit, Offset: p.Offset, ScanLimit: s.cfg.ScanLimit, MaxBytes: findPageBytes},
		func(rec []byte) error {
			lines = append(append(lines, rec...), '\n')
			return nil
		})
	if cap(lines) <= findPooledMax {
		*buf = lines[:0]
	}
	switch {
	case errors.Is(err, find.ErrOffsetInScan):
		return &respond.Error{Status: http.StatusBadRequest, Code: "invalid_parameter",
			Message: "offset: the filters need a scan (a field without a lookup index), which pages with cursor=<scan.next_cursor>; drop offset"}
	case errors.Is(err, find.ErrCursorGeneration):
		return &respond.Error{Status: http.StatusBadRequest, Code: "invalid_parameter", Message: "cursor: it belongs to another generation"}
	case err != nil:
		return s.unreadable(name, h.Generation, err)
	}

	head := s.findEnvelope(c, route, name, h.Generation, p, res)
	fields := h.Fields
	if req.Fields != nil {
		fields = make([]string, len(req.Fields))
		for i, f := range req.Fields {
			fields[i] = h.Fields[f]
		}
	}
	// The records found, one a line, written as a page of the file is.
	body := respond.Page{Src: bytes.NewReader(lines), End: int64(len(lines)), Records: res.Returned,
		Format: respondFormat(p.Format), Fields: fields, Gzip: gz}
	if body.Format == respond.JSON {
		body.Head = append(appendFindHead(nil, head), `,"data":[`...)
		body.Tail = envelopeTail
	}
	hdr.SetContentType(p.Format.ContentType())
	if gz {
		hdr.Set(fiber.HeaderContentEncoding, "gzip")
	}
	if c.Method() == fiber.MethodHead {
		if size := body.Size(); size >= 0 {
			hdr.SetContentLength(int(size))
		}
		return nil
	}
	_, err = body.WriteTo(c.Response().BodyWriter())
	return err
}

// findBufs hold the records of filtered pages, up to findPooledMax.
var findBufs = sync.Pool{New: func() any { return new([]byte) }}

const findPooledMax = 64 << 10

// cursorPin is the generation a filtered request reads: the cursor's,
// which must agree with generation= when both are sent.
func cursorPin(args *fasthttp.Args, pin uint64) (uint64, error) {
	v := args.Peek(find.CursorParam)
	if v == nil {
		return pin, nil
	}
	cur, err := find.ParseCursor(string(v))
	if err != nil {
		return 0, &respond.Error{Status: http.StatusBadRequest, Code: "invalid_parameter",
			Message: fmt.Sprintf("cursor: %q is not a cursor; pass back the next_cursor of the previous page as it is", v)}
	}
	if pin != 0 && pin != cur.Generation {
		return 0, &respond.Error{Status: http.StatusBadRequest, Code: "invalid_parameter",
			Message: fmt.Sprintf("generation=%d and a cursor of generation %d: drop one of them", pin, cur.Generation)}
	}
	return cur.Generation, nil
}

// queryPairs is the query string's (name, value) pairs, decoded, in order.
func queryPairs(args *fasthttp.Args) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		more := true
		args.VisitAll(func(k, v []byte) {
			// Views of the request, as fiber's own query values: they
			// are used while the handler runs.
			more = more && yield(utils.UnsafeString(k), utils.UnsafeString(v))
		})
	}
}

// findEnvelope is the envelope of a filtered page; it sets its X-Total-Count and
// Link headers.
func (s *Server) findEnvelope(c *fiber.Ctx, route, name string, gen uint64, p params.Page, res find.Result) findHead {
	head := findHead{Dataset: name, Generation: gen, Count: res.Count, Offset: p.Offset, Limit: p.Limit,
		Returned: res.Returned, NextOffset: res.NextOffset}
	hdr := &c.Response().Header
	if res.Count != nil {
		hdr.Set("X-Total-Count", strconv.FormatUint(*res.Count, 10))
	}
	if sc := res.Scan; sc != nil {
		head.Scan = &findScan{Index: sc.Indexed, Scanned: sc.Scanned, ScanLimit: s.cfg.ScanLimit}
		if sc.Next != nil {
			next := sc.Next.String()
			head.Scan.NextCursor = &next
			hdr.Set(fiber.HeaderLink, findLink(c, route, name, gen, find.CursorParam, next))
		}
	} else if res.NextOffset != nil {
		hdr.Set(fiber.HeaderLink, findLink(c, route, name, gen, "offset", strconv.FormatUint(*res.NextOffset, 10)))
	}
	return head
}

// appendFindHead appends head as JSON, without its closing brace.
func appendFindHead(b []byte, head findHead) []byte {
	j, _ := json.Marshal(head) // no value of findHead fails to encode
	return append(b, j[:len(j)-1]...)
}

// findLink is the Link header of the next filtered page: the request's
// own parameters with param set to value, pinned to generation gen.
func findLink(c *fiber.Ctx, route, name string, gen uint64, param, value string) string {
	var next fasthttp.Args
	c.Context().QueryArgs().CopyTo(&next)
	next.Del("offset")
	next.Del(find.CursorParam)
	next.Set(param, value)
	next.Set("generation", strconv.FormatUint(gen, 10))
	path := route
	if route == routeRecords {
		path = "/datasets/" + name + "/records"
	}
	return "<" + path + "?" + strings.ReplaceAll(next.String(), " ", "%20") + `>; rel="next"`
}
