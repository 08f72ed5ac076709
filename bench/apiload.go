package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// apiCase is one request shape of the API load test.
type apiCase struct {
	name   string
	limit  int  // 0: metadata_only
	last   bool // the last page instead of offset 0
	format string
	path   string // on the real api
	body   int    // bytes of the answer (the same for the ceiling)
	// records is the number of records the page holds when it is not
	// limit (a lookup); vs is the case it is compared with, measured in
	// the same interleave.
	records int
	vs      *apiCase

	ours, ceiling loadResult
	before        loadResult // of -api-before, when given
}

// apiResult is the whole API section.
type apiResult struct {
	rows          int
	cases         []*apiCase
	apiPeakBefore int64 // api VmHWM before the load
	apiPeakAfter  int64
	ceilingPeak   int64
	beforePeak    int64 // of -api-before, 0 without it
	duration      time.Duration
	loadgen       string
}

// apiCases are the cases for a dataset of rows records.
func apiCases(rows int) []*apiCase {
	cases := []*apiCase{{name: "metadata_only", format: "json",
		path: "/fetch-data?dataset=" + benchDataset + "&metadata_only=true"}}
	for _, limit := range []int{10, 100} {
		for _, format := range []string{"json", "ndjson"} {
			for _, last := range []bool{false, true} {
				offset := 0
				where := "offset=0"
				if last {
					offset = max(rows-limit, 0)
					where = "last page"
				}
				path := fmt.Sprintf("/fetch-data?dataset=%s&limit=%d&offset=%d", benchDataset, limit, offset)
				if format == "ndjson" {
					path += "&format=ndjson"
				}
				cases = append(cases, &apiCase{
					name:  fmt.Sprintf("limit=%d %s %s", limit, where, format),
					limit: limit, last: last, format: format, path: path,
				})
			}
		}
	}
	return cases
}

// lookupCase is a lookup by the indexed field of one value held by
// records records, compared with the first page of 10 in JSON.
func lookupCase(cases []*apiCase, value string, records int) *apiCase {
	var first *apiCase
	for _, c := range cases {
		if c.limit == 10 && !c.last && c.format == "json" {
			first = c
		}
	}
	return &apiCase{name: "lookup " + benchIndexField + " json", limit: 10, format: "json", records: records, vs: first,
		path: "/fetch-data?dataset=" + benchDataset + "&limit=10&" + url.QueryEscape("eq."+benchIndexField) + "=" + url.QueryEscape(value)}
}

// lookupValue is the indexed field's value of the record in the middle
// of the dataset, and how many records hold it, asked of the api itself.
func lookupValue(ctx context.Context, addr, key string, rows int) (string, int, error) {
	path := fmt.Sprintf("/fetch-data?dataset=%s&limit=1&offset=%d&fields=%s", benchDataset, rows/2, url.QueryEscape(benchIndexField))
	body, _, err := fetchOnce(ctx, addr, path, key)
	if err != nil {
		return "", 0, err
	}
	var page struct {
		Data []map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Data) != 1 {
		return "", 0, fmt.Errorf("record %d: %.200s", rows/2, body)
	}
	value := page.Data[0][benchIndexField]
	body, _, err = fetchOnce(ctx, addr, "/fetch-data?dataset="+benchDataset+"&limit=1&"+url.QueryEscape("eq."+benchIndexField)+"="+url.QueryEscape(value), key)
	if err != nil {
		return "", 0, err
	}
	var found struct {
		Count *int `json:"count"`
	}
	if err := json.Unmarshal(body, &found); err != nil || found.Count == nil || *found.Count < 1 {
		return "", 0, fmt.Errorf("lookup of %q is not an answer from an index: %.200s", value, body)
	}
	return value, *found.Count, nil
}

// runAPILoad measures every case against the real api of s and against the
// fiber ceiling, interleaved case by case so drift hits both alike.
func (b *bench) runAPILoad(ctx context.Context, s *services, rows int) (*apiResult, error) {
	res := &apiResult{rows: rows, cases: apiCases(rows), apiPeakBefore: s.api.peakRSS(), duration: b.opt.duration, loadgen: b.opt.loadgen}
	if s.indexed {
		value, n, err := lookupValue(ctx, s.apiAddr, b.apiKey, rows)
		if err != nil {
			return nil, fmt.Errorf("lookup: %w", err)
		}
		res.cases = append(res.cases, lookupCase(res.cases, value, n))
	}
	dir, err := os.MkdirTemp(b.tmp, "ceiling-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The real answers, once: the ceiling serves exactly these bytes.
	for i, c := range res.cases {
		body, ctype, err := fetchOnce(ctx, s.apiAddr, c.path, b.apiKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		if err := checkPage(c, body); err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		c.body = len(body)
		if err := os.WriteFile(ceilingBodyPath(dir, i), body, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(ceilingTypePath(dir, i), []byte(ctype), 0o644); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ceilAddr := "127.0.0.1:" + strconv.Itoa(port)
	cp, err := b.sup.start(spec{
		name: "fiber-ceiling", timeout: b.opt.timeout, bin: self,
		args: []string{"-serve-ceiling", dir, "-ceiling-addr", ceilAddr},
	})
	if err != nil {
		return nil, err
	}
	defer cp.stop(5 * time.Second)
	if err := waitTCP(ctx, cp, ceilAddr, 30*time.Second); err != nil {
		return nil, err
	}

	var before *proc
	var beforeAddr string
	if b.opt.apiBefore != "" {
		if before, beforeAddr, err = b.startAPI(ctx, "api-before", b.opt.apiBefore, s.dataDir); err != nil {
			return nil, err
		}
		defer before.stop(5 * time.Second)
	}

	gen := loadGen{conns: b.opt.conns, wrk: b.opt.loadgen == "wrk"}
	warmup := min(time.Second, b.opt.duration/5)
	keyHeader := map[string]string{"X-API-Key": b.apiKey}
	// Cases that are compared with each other (the first and the last page
	// of one limit and format) are measured together, interleaved.
	for _, group := range groupCases(res.cases) {
		var eps []endpoint
		var names []string
		for _, i := range group {
			c := res.cases[i]
			names = append(names, c.name)
			eps = append(eps,
				endpoint{addr: s.apiAddr, path: c.path, headers: keyHeader, wantLen: c.body, serverCPU: s.api.cpu},
				endpoint{addr: ceilAddr, path: fmt.Sprintf("/c/%d", i), wantLen: c.body, serverCPU: cp.cpu})
			if before != nil {
				eps = append(eps, endpoint{addr: beforeAddr, path: c.path, headers: keyHeader, wantLen: c.body, serverCPU: before.cpu})
			}
		}
		per := 2
		if before != nil {
			per = 3
		}
		logf("api load: %s: %d connections, %s each for ours and the ceiling, %d slices", strings.Join(names, " + "), b.opt.conns, b.opt.duration, b.opt.slices)
		out, err := gen.interleave(ctx, eps, warmup, b.opt.duration, b.opt.slices)
		if err != nil {
			return nil, err
		}
		for k, i := range group {
			c := res.cases[i]
			c.ours, c.ceiling = out[per*k], out[per*k+1]
			if before != nil {
				c.before = out[per*k+2]
			}
			logf("api load: %-32s ours %.0f req/s p99 %s, ceiling %.0f req/s p99 %s", c.name,
				c.ours.rps(), c.ours.p99, c.ceiling.rps(), c.ceiling.p99)
			if c.ours.errors > 0 || c.ceiling.errors > 0 {
				logf("api load: %s: errors: ours %d (%s), ceiling %d (%s)", c.name,
					c.ours.errors, c.ours.firstErr, c.ceiling.errors, c.ceiling.firstErr)
			}
		}
	}
	res.apiPeakAfter = s.api.peakRSS()
	res.ceilingPeak = cp.peakRSS()
	if before != nil {
		res.beforePeak = before.peakRSS()
	}
	return res, nil
}

// groupCases groups the indexes of cases measured together: metadata
// alone, then the first and last page of each limit and format.
func groupCases(cases []*apiCase) [][]int {
	var groups [][]int
	at := map[string]int{}
	for i, c := range cases {
		key := fmt.Sprintf("%d %s", c.limit, c.format) // a lookup joins the page it is compared with
		if g, ok := at[key]; ok {
			groups[g] = append(groups[g], i)
			continue
		}
		at[key] = len(groups)
		groups = append(groups, []int{i})
	}
	return groups
}

// fetchOnce GETs path from the api with the key.
func fetchOnce(ctx context.Context, addr, path, key string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s %.300s", path, resp.Status, body)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// checkPage makes sure a page holds what the case asked for, so the load
// test never measures an error answer.
func checkPage(c *apiCase, body []byte) error {
	if c.limit == 0 {
		var meta struct {
			Count *int64 `json:"count"`
		}
		if err := json.Unmarshal(body, &meta); err != nil || meta.Count == nil {
			return fmt.Errorf("metadata is not a JSON object with a count: %.200s", body)
		}
		return nil
	}
	if c.format == "ndjson" {
		if n := bytes.Count(body, []byte{'\n'}); n != c.limit {
			return fmt.Errorf("NDJSON page has %d lines, want %d", n, c.limit)
		}
		return nil
	}
	var page struct {
		Returned int               `json:"returned"`
		Data     []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("page is not JSON: %v", err)
	}
	want := c.limit
	if c.records > 0 {
		want = min(c.records, c.limit)
	}
	if page.Returned != want || len(page.Data) != want {
		return fmt.Errorf("page returned %d (%d in data), want %d", page.Returned, len(page.Data), want)
	}
	return nil
}
