package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/find"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
	"github.com/rowpipe/rowpipe/services/api/internal/store"
)

// query looks the request's query parameters up (a params.Query). The
// strings are valid while the handler runs.
func query(c *fiber.Ctx) params.Query {
	return func(name string) (string, bool) {
		return c.Query(name), c.Context().QueryArgs().Has(name)
	}
}

func badParam(e *params.Error) error {
	code := "invalid_parameter"
	if e.Param == "dataset" {
		code = "invalid_dataset"
	}
	return &respond.Error{Status: http.StatusBadRequest, Code: code, Message: e.Message}
}

// GET /fetch-data
func (s *Server) fetchData(c *fiber.Ctx) error {
	name := s.cfg.Dataset
	if v, ok := query(c)("dataset"); ok {
		name = v
	}
	return s.records(c, name, routeFetch)
}

// GET /datasets/:name/records
func (s *Server) getRecords(c *fiber.Ctx) error { return s.records(c, c.Params("name"), routeRecords) }

// records answers a data request on dataset name: its metadata, a page
// filtered or projected (find), or a page.
func (s *Server) records(c *fiber.Ctx, name, route string) error {
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	p, e := params.ParsePage(query(c), c.Get(fiber.HeaderAccept), s.cfg.MaxLimit)
	switch {
	case e != nil:
		return badParam(e)
	case p.MetadataOnly:
		return s.metadata(c, name, p.Generation)
	case wantsFind(c):
		return s.find(c, name, p, route)
	}
	return s.page(c, name, p, route)
}

// GET /datasets/:name
func (s *Server) getDataset(c *fiber.Ctx) error {
	name := c.Params("name")
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	var pin uint64
	if v, ok := query(c)("generation"); ok {
		g, e := params.ParseGeneration(v)
		if e != nil {
			return badParam(e)
		}
		pin = g
	}
	return s.metadata(c, name, pin)
}

// storeError turns a store error into the answer that says what to do.
func (s *Server) storeError(err error, name string, pin uint64) error {
	e := &respond.Error{Err: err}
	switch {
	case errors.Is(err, store.ErrDatasetNotFound):
		e.Status, e.Code = http.StatusNotFound, "dataset_not_found"
		e.Message = fmt.Sprintf("dataset %q not found; check the dataset name (GET /datasets lists them)", name)
	case errors.Is(err, store.ErrNoGeneration):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "no_generation", 5*time.Second
		e.Message = fmt.Sprintf("dataset %q has no complete generation yet; retry once its first sync has finished", name)
	case errors.Is(err, store.ErrGenerationGone):
		e.Status, e.Code = http.StatusGone, "generation_gone"
		e.Message = fmt.Sprintf("generation %d of dataset %q is no longer kept; drop the generation parameter to read the current generation, and page again", pin, name)
	case errors.Is(err, store.ErrGenerationNotFound):
		e.Status, e.Code = http.StatusNotFound, "generation_not_found"
		e.Message = fmt.Sprintf("dataset %q has no complete generation %d; use a generation that metadata_only=true reports, or drop the generation parameter", name, pin)
	case errors.Is(err, store.ErrUnavailable):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "unavailable", time.Second
		e.Message = fmt.Sprintf("dataset %q cannot be read right now; retry shortly", name)
		s.log.Warn("dataset unreadable", "dataset", name, "err", err)
	default:
		return err
	}
	return e
}

// metadataBody is the answer of metadata_only=true and /datasets/{name}.
type metadataBody struct {
	Dataset    string        `json:"dataset"`
	Generation uint64        `json:"generation"`
	State      string        `json:"state"`
	Mode       schema.Mode   `json:"mode"`
	Sync       string        `json:"sync"`
	Count      uint64        `json:"count"`
	Rejected   uint64        `json:"rejected"`
	Fields     []string      `json:"fields"`
	Source     schema.Source `json:"source"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	// Indexes are the fields with a lookup index, and how many distinct
	// values each holds.
	Indexes []find.IndexInfo `json:"indexes"`
}

func metadataOf(h schema.Header, indexes []find.IndexInfo) metadataBody {
	if indexes == nil {
		indexes = []find.IndexInfo{}
	}
	return metadataBody{
		Dataset: h.Dataset, Generation: h.Generation, State: h.State, Mode: h.Mode, Sync: h.Sync,
		Count: h.Count, Rejected: h.Rejected, Fields: h.Fields, Source: h.Source,
		CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt, Indexes: indexes,
	}
}

// indexesOf describes the lookup indexes of the lease's generation; stale
// is true when one of them does not cover its header yet.
func (s *Server) indexesOf(c *fiber.Ctx, lease store.Lease) (info []find.IndexInfo, stale bool) {
	x, release, err := lease.Lookups(c.Context().Time())
	defer release()
	if err != nil {
		s.log.Warn("a lookup index is left out", "dataset", lease.Header.Dataset, "generation", lease.Header.Generation, "err", err)
	}
	info = x.Describe(lease.Header.Fields, lease.Header.Count)
	for _, i := range info {
		stale = stale || i.Stale
	}
	return info, stale
}

// metadata answers from the generation's header.
func (s *Server) metadata(c *fiber.Ctx, name string, pin uint64) error {
	lease, err := s.store.Acquire(name, pin)
	if err != nil {
		return s.storeError(err, name, pin)
	}
	defer lease.Release()
	// The indexes are part of the answer: a stale one (being rebuilt after
	// an append) makes another representation of the same header.
	info, stale := s.indexesOf(c, lease)
	kind := "metadata"
	if stale {
		kind = "metadata, stale indexes"
	}
	tag := appendETag(nil, name, &lease.Header, 0, 0, kind)
	c.Response().Header.SetBytesV(fiber.HeaderETag, tag)
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	return c.JSON(metadataOf(lease.Header, info))
}

// GET /datasets: the datasets of DATA_DIR with a complete generation and
// their metadata, sorted by name, a page at a time (limit, offset): only
// the datasets of the page are opened.
func (s *Server) listDatasets(c *fiber.Ctx) error {
	p, e := params.ParseList(query(c))
	if e != nil {
		return badParam(e)
	}
	names, err := datasetNames(s.cfg.DataDir)
	if err != nil {
		return &respond.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 5 * time.Second,
			Message: "the data directory cannot be read; see /readyz", Err: err}
	}
	list := make([]datasetItem, 0, min(p.Limit, len(names)))
	next := -1
	for i := p.Offset; i < len(names); i++ {
		if len(list) == p.Limit {
			next = i
			break
		}
		lease, err := s.store.Acquire(names[i], 0)
		if err != nil {
			if !errors.Is(err, store.ErrDatasetNotFound) && !errors.Is(err, store.ErrNoGeneration) {
				s.log.Warn("dataset left out of /datasets", "dataset", names[i], "err", err)
			}
			continue
		}
		info, _ := s.indexesOf(c, lease)
		list = append(list, s.datasetItem(names[i], metadataOf(lease.Header, info)))
		lease.Release()
	}
	var nextOffset *int
	if next >= 0 {
		nextOffset = &next
		c.Set(fiber.HeaderLink, fmt.Sprintf(`</datasets?limit=%d&offset=%d>; rel="next"`, p.Limit, next))
	}
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	return c.JSON(struct {
		Datasets   []datasetItem `json:"datasets"`
		Offset     int           `json:"offset"`
		Limit      int           `json:"limit"`
		NextOffset *int          `json:"next_offset"`
	}{list, p.Offset, p.Limit, nextOffset})
}

// datasetNames lists the folders of dataDir named like datasets, sorted; a
// missing dataDir has none.
func datasetNames(dataDir string) ([]string, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && schema.ValidateDataset(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil // os.ReadDir sorts by name
}

// GET /healthz: the process answers.
func (s *Server) healthz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(`{"status":"ok"}`)
}

// GET /readyz: DATA_DIR is a readable directory, the writer beside this api
// has caught up with the stream (schema.WriterStatusFile; NATS itself is
// not asked, so an outage keeps a caught-up api ready), and the server is
// not shutting down. Otherwise 503 saying why; the path and the system's
// error go to the log, not to the client.
func (s *Server) readyz(c *fiber.Ctx) error {
	notReady := func(msg string, err error) error {
		if err != nil {
			s.log.Warn("not ready", "reason", msg, "data_dir", s.cfg.DataDir, "err", err)
		}
		return &respond.Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: msg}
	}
	if s.stopping.Load() {
		return notReady("shutting down", nil)
	}
	f, err := os.Open(s.cfg.DataDir)
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return notReady("DATA_DIR does not exist; create it or point DATA_DIR at the writer's data directory", err)
	case err != nil:
		return notReady("DATA_DIR is not a readable directory; check that it is the writer's data directory and that the api may read it", err)
	}
	// The writer beside this api says whether the files hold what the
	// stream held when it started: a new pod is not ready before that.
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, schema.WriterStatusFile))
	if err != nil {
		return notReady("no writer has reported on the data directory yet: start the writer beside this api", err)
	}
	st, err := schema.DecodeWriterStatus(b)
	if err != nil {
		return notReady("the writer's status is unreadable; it is rewritten when the writer starts", err)
	}
	if !st.CaughtUp {
		return notReady(fmt.Sprintf("the writer is catching up with stream %s (applied sequence %d of %d)", st.Stream, st.AppliedSeq, st.TargetSeq), nil)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(`{"status":"ready"}`)
}

// GET /openapi.json
func (s *Server) openapiDoc(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(s.openapi)
}
