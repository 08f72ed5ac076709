package api

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/rejects"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// GET /datasets/:name/rejects: the rows the current (or the pinned)
// generation refused, paged with limit and offset like its records.
func (s *Server) getRejects(c *fiber.Ctx) error {
	name := c.Params("name")
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	p, e := params.ParsePage(query(c), "", s.cfg.MaxLimit)
	if e != nil {
		return badParam(e)
	}
	if p.Format != params.JSON {
		return &respond.Error{Status: http.StatusBadRequest, Code: "invalid_parameter", Message: "rejects are served as JSON only; drop the format parameter"}
	}
	lease, err := s.store.Acquire(name, p.Generation)
	if err != nil {
		return s.storeError(err, name, p.Generation)
	}
	defer lease.Release()
	h := &lease.Header
	page, err := rejects.Read(rejects.Generation{
		Dir: filepath.Join(s.cfg.DataDir, name), Dataset: name, Generation: h.Generation, Rejected: h.Rejected,
	}, p.Offset, p.Limit, s.log)
	if errors.Is(err, rejects.ErrMissing) {
		return &respond.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: time.Second, Err: err,
			Message: fmt.Sprintf("the rejects of generation %d of dataset %q cannot be read right now; retry shortly", h.Generation, name)}
	}
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	return c.JSON(page)
}
