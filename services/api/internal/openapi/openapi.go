// Package openapi builds the api's OpenAPI 3 document, served at
// /openapi.json. A test in package api checks that every route the server
// registers is described here, and nothing else.
package openapi

import (
	"encoding/json"
	"strconv"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Options are the figures the document states.
type Options struct {
	MaxLimit       int
	DefaultLimit   int
	DefaultDataset string
	ScanLimit      uint64
	// AuthOff drops the security requirement (API_AUTH=off).
	AuthOff bool
}

type obj = map[string]any

// Document returns the OpenAPI 3.0 document as JSON.
func Document(o Options) ([]byte, error) {
	ref := func(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }
	errResp := func(desc string) obj {
		return obj{"description": desc, "content": obj{"application/json": obj{"schema": ref("Error")}}}
	}
	jsonResp := func(desc, schemaName string) obj {
		return obj{"description": desc, "content": obj{"application/json": obj{"schema": ref(schemaName)}}}
	}
	param := func(name, in, desc string, sch obj, required bool) obj {
		return obj{"name": name, "in": in, "description": desc, "required": required, "schema": sch}
	}
	datasetPattern := obj{"type": "string", "pattern": schema.DatasetPattern}
	pathName := param("name", "path", "Dataset name.", datasetPattern, true)
	pageParams := []any{
		param("limit", "query", "Records per page, 1.."+strconv.Itoa(o.MaxLimit)+" (MAX_LIMIT).", obj{"type": "integer", "minimum": 1, "maximum": o.MaxLimit, "default": o.DefaultLimit}, false),
		param("offset", "query", "Records to skip. Past the end gives an empty page.", obj{"type": "integer", "minimum": 0, "default": 0}, false),
		param("generation", "query", "Pin the page to this generation; 410 once it is pruned.", obj{"type": "integer", "minimum": 1}, false),
		param("format", "query", "json (envelope, default), ndjson (raw lines) or csv. Without it, Accept: application/x-ndjson or text/csv chooses.", obj{"type": "string", "enum": []string{"json", "ndjson", "csv"}}, false),
		param("If-None-Match", "header", "An ETag from an earlier answer: 304 while the page is unchanged.", obj{"type": "string"}, false),
		param("eq.{field}", "query", "Equality filter: records whose {field} is exactly the value (empty: an empty cell). The parameter's name is `eq.` followed by the header name, percent-encoded like any query parameter (`eq.Variant%20SKU=FH-0001-1`, `eq.limit=3`: a column called limit); several combine with AND; an unknown field is a 400 listing the fields. "+
			"On a field with a lookup index (ingester --index) the answer is exact and paged with limit and offset; on others the api scans at most "+strconv.FormatUint(o.ScanLimit, 10)+" records (SCAN_LIMIT) per request and the page's scan member says where to continue (cursor).", obj{"type": "string"}, false),
		param("fields", "query", "Projection: only these keys, in this order, in JSON, NDJSON and CSV. One CSV record: names separated by commas, a name holding a comma or a quote in double quotes (`fields=Handle,\"Weight, kg\"`). An unknown field is a 400 listing the fields.", obj{"type": "string"}, false),
		param("cursor", "query", "Continue a filtered scan: the scan.next_cursor of the previous page, as it is (it names its generation, which it pins). Send the same filters.", obj{"type": "string", "pattern": "^[1-9][0-9]*\\.[0-9]+$"}, false),
	}
	pageHeaders := obj{
		"ETag":          obj{"description": "From dataset, generation, count, offset, limit and format.", "schema": obj{"type": "string"}},
		"X-Total-Count": obj{"description": "Records in the generation.", "schema": obj{"type": "integer"}},
		"Link":          obj{"description": `<...>; rel="next", pinned to this generation, when there is a next page.`, "schema": obj{"type": "string"}},
	}
	pageOK := obj{
		"description": "One page of records, in file order.",
		"headers":     pageHeaders,
		"content": obj{
			"application/json":     obj{"schema": ref("Page")},
			"application/x-ndjson": obj{"schema": obj{"type": "string", "description": "One record a line."}},
			"text/csv":             obj{"schema": obj{"type": "string", "description": "A header row of the fields, then one row a record."}},
		},
	}
	dataErrors := obj{
		"304": obj{"description": "Not modified (If-None-Match matched the ETag)."},
		"400": errResp("A parameter or the dataset name is malformed; the message names it."),
		"401": errResp("No API key, or a wrong one."),
		"404": errResp("No such dataset, or no such generation."),
		"410": errResp("The pinned generation was pruned."),
		"429": errResp("This key's rate limit was reached; see Retry-After."),
		"503": errResp("The dataset has no complete generation yet, or cannot be read now."),
	}
	with := func(base obj, extra obj) obj {
		out := obj{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	security := []any{obj{"apiKey": []any{}}, obj{"bearer": []any{}}}
	if o.AuthOff {
		security = []any{}
	}
	op := func(id, summary string, params []any, responses obj, secured bool) obj {
		m := obj{"operationId": id, "summary": summary, "responses": responses}
		if len(params) > 0 {
			m["parameters"] = params
		}
		if !secured {
			m["security"] = []any{}
		}
		return m
	}
	getHead := func(get obj) obj {
		head := obj{}
		for k, v := range get {
			head[k] = v
		}
		head["operationId"] = get["operationId"].(string) + "Head"
		head["summary"] = "Headers of GET " + get["summary"].(string)
		return obj{"get": get, "head": head}
	}
	fetchParams := append([]any{
		param("dataset", "query", "Dataset; default "+strconv.Quote(o.DefaultDataset)+" (DATASET).", datasetPattern, false),
		param("metadata_only", "query", "true: the generation's metadata instead of records.", obj{"type": "boolean"}, false),
	}, pageParams...)
	str := obj{"type": "string"}
	html := func(desc string) obj {
		return obj{"description": desc, "content": obj{"text/html": obj{"schema": str}}}
	}
	plain := func(desc string) obj {
		return obj{"description": desc, "content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}}
	}
	paths := obj{
		"/fetch-data": getHead(op("fetchData", "/fetch-data: a page of records (or, with metadata_only=true, the metadata)", fetchParams,
			with(dataErrors, obj{"200": with(pageOK, obj{"content": with(pageOK["content"].(obj), obj{"application/json": obj{"schema": obj{"oneOf": []any{ref("Page"), ref("Metadata")}}}})})}), true)),
		"/datasets": getHead(op("listDatasets", "/datasets: the datasets with their metadata, a page at a time", []any{
			param("limit", "query", "Datasets per page, 1..1000; default 100.", obj{"type": "integer", "minimum": 1, "maximum": 1000}, false),
			param("offset", "query", "Datasets to skip, in name order; default 0.", obj{"type": "integer", "minimum": 0}, false),
		}, obj{"200": jsonResp("The datasets that have a complete generation, sorted by name; next_offset (and a Link header) names the next page, null on the last.", "DatasetList"),
			"400": dataErrors["400"], "401": errResp("No API key, or a wrong one."), "429": dataErrors["429"]}, true)),
		"/datasets/{name}": getHead(op("getDataset", "/datasets/{name}: the metadata of one dataset", []any{pathName, pageParams[2]},
			with(dataErrors, obj{"200": jsonResp("The generation's metadata.", "Metadata")}), true)),
		"/datasets/{name}/records": getHead(op("getRecords", "/datasets/{name}/records: a page of records", append([]any{pathName}, pageParams...),
			with(dataErrors, obj{"200": pageOK}), true)),
		"/datasets/{name}/rejects": getHead(op("getRejects", "/datasets/{name}/rejects: a page of the rows a generation refused", []any{pathName, pageParams[0], pageParams[1], pageParams[2]},
			with(dataErrors, obj{"200": jsonResp("One page of rejects, in the order the writer kept them (source line order within a sync). A page at offset N reads the N rejects before it.", "RejectPage")}), true)),
		"/": getHead(op("console", "/: the web console (HTML; the data it shows needs a key)", nil,
			obj{"200": html("The console's page. Its scripts and styles are served under /console/.")}, false)),
		"/console/{file}": getHead(op("consoleFile", "/console/{file}: a static file of the web console", []any{param("file", "path", "A file the console's page refers to.", str, true)},
			obj{"200": obj{"description": "The file (JavaScript, CSS or SVG)."}, "304": obj{"description": "Not modified (If-None-Match matched the ETag)."}, "404": errResp("No such file.")}, false)),
		"/healthz": getHead(op("healthz", "/healthz: the process is alive", nil,
			obj{"200": jsonResp("Alive.", "Status")}, false)),
		"/readyz": getHead(op("readyz", "/readyz: the writer beside this api has caught up with the stream", nil,
			obj{"200": jsonResp("Ready: every dataset the stream held when the writer started is served (NATS itself is not asked).", "Status"), "503": errResp("Not ready (no writer yet, the writer catching up, shutting down); the message says why.")}, false)),
		"/metrics": getHead(op("metrics", "/metrics: Prometheus metrics", nil,
			obj{"200": plain("Prometheus text format.")}, false)),
		"/openapi.json": getHead(op("openapi", "/openapi.json: this document", nil,
			obj{"200": obj{"description": "OpenAPI 3 document.", "content": obj{"application/json": obj{"schema": obj{"type": "object"}}}}}, false)),
	}
	integer := obj{"type": "integer", "minimum": 0}
	schemas := obj{
		"Page": obj{
			"type":        "object",
			"description": "Members in this order; data last.",
			"required":    []string{"dataset", "generation", "count", "offset", "limit", "returned", "next_offset", "data"},
			"properties": obj{
				"dataset": str, "generation": integer,
				"count":  obj{"type": "integer", "minimum": 0, "nullable": true, "description": "Records, or with filters the records that match; null when a filtered scan cannot know it yet (it did not read every record in this page)."},
				"offset": integer, "limit": integer, "returned": integer,
				"next_offset": obj{"type": "integer", "nullable": true, "description": "null on the last page, and for scans (which continue with scan.next_cursor)"},
				"scan":        ref("Scan"),
				"data":        obj{"type": "array", "items": ref("Record")},
			},
		},
		"Scan": obj{
			"type":        "object",
			"description": "Present when filters were tested record by record (a field without a lookup index).",
			"required":    []string{"scanned", "scan_limit", "next_cursor"},
			"properties": obj{
				"index":       obj{"type": "string", "description": "The field whose lookup index chose the records scanned; absent when every record was."},
				"scanned":     obj{"type": "integer", "minimum": 0, "description": "Records this request read."},
				"scan_limit":  obj{"type": "integer", "minimum": 1, "description": "SCAN_LIMIT: the most records one request reads."},
				"next_cursor": obj{"type": "string", "nullable": true, "description": "Pass as cursor= for the next page; null once every record was scanned."},
			},
		},
		"RejectPage": obj{
			"type":        "object",
			"description": "The records' page envelope over rejects; count is the generation's rejected rows.",
			"required":    []string{"dataset", "generation", "count", "offset", "limit", "returned", "next_offset", "data"},
			"properties": obj{
				"dataset": str, "generation": integer, "count": integer, "offset": integer, "limit": integer, "returned": integer,
				"next_offset": obj{"type": "integer", "nullable": true, "description": "null on the last page"},
				"data":        obj{"type": "array", "items": ref("Reject")},
			},
		},
		"Reject": obj{
			"type": "object", "required": []string{"line", "reason", "error"},
			"properties": obj{
				"line":   obj{"type": "integer", "minimum": 0, "description": "Line of the source where the refused row starts, 1-based (0 only for a stand-in: reason \"unreadable reject\")."},
				"column": obj{"type": "integer", "minimum": 1, "description": "1-based column of the problem; absent when it is about the whole row."},
				"reason": obj{"type": "string", "description": "A short stable phrase: \"wrong number of fields\", \"broken quoting\", \"invalid UTF-8\", \"record too large\"."},
				"error":  obj{"type": "string", "maxLength": schema.RejectErrorMax, "description": "The full message; it names the source by its base name."},
				"raw":    obj{"type": "string", "maxLength": schema.RejectRawMax, "description": "The start of the row's text, for a person to read."},
			},
		},
		"Record": obj{"type": "object", "description": "One CSV row: the header names (made unique) in header order, string values.", "additionalProperties": str},
		"Metadata": obj{
			"type":     "object",
			"required": []string{"dataset", "generation", "state", "count", "fields", "source", "updated_at"},
			"properties": obj{
				"dataset": str, "generation": integer, "state": obj{"type": "string", "enum": []string{schema.StateComplete}},
				"mode": obj{"type": "string", "enum": []string{string(schema.ModeReplace), string(schema.ModeAppend)}},
				"sync": str, "count": integer, "rejected": integer,
				"fields":     obj{"type": "array", "items": str},
				"source":     obj{"type": "object", "properties": obj{"name": str, "size": obj{"type": "integer"}, "sha256": str}},
				"created_at": obj{"type": "string", "format": "date-time"},
				"updated_at": obj{"type": "string", "format": "date-time"},
				"indexes": obj{"type": "array", "description": "The fields with a lookup index (ingester --index).", "items": obj{
					"type": "object", "required": []string{"field", "distinct"},
					"properties": obj{
						"field":    str,
						"distinct": obj{"type": "integer", "minimum": 0, "description": "Distinct values."},
						"stale":    obj{"type": "boolean", "description": "true while an append's rows are not in it yet: the field is scanned until the writer has rebuilt it."},
					},
				}},
			},
		},
		"DatasetList": obj{"type": "object", "required": []string{"datasets", "offset", "limit", "next_offset"}, "properties": obj{
			"datasets": obj{"type": "array", "items": obj{"allOf": []any{ref("Metadata"), obj{
				"type": "object", "properties": obj{"building": ref("Building")},
			}}}}, "offset": obj{"type": "integer"}, "limit": obj{"type": "integer"},
			"next_offset": obj{"type": []string{"integer", "null"}}}},
		"Building": obj{
			"type":        "object",
			"description": "The sync in progress, as its files show it: a replace generation newer than the current one, still building. Absent when there is none.",
			"properties": obj{
				"generation": integer, "sync": str,
				"count":      obj{"type": "integer", "minimum": 0, "description": "Rows written so far; the total is known only when the sync ends."},
				"rejected":   integer,
				"source":     obj{"type": "object", "properties": obj{"name": str, "size": obj{"type": "integer"}, "sha256": str}},
				"started_at": obj{"type": "string", "format": "date-time"},
				"updated_at": obj{"type": "string", "format": "date-time"},
			},
		},
		"Status": obj{"type": "object", "properties": obj{"status": str}, "additionalProperties": true},
		"Error": obj{
			"type": "object", "required": []string{"error"},
			"properties": obj{"error": obj{"type": "object", "required": []string{"code", "message"},
				"properties": obj{"code": str, "message": obj{"type": "string", "description": "What to change."}}}},
		},
	}
	doc := obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":       "rowpipe api",
			"version":     "1",
			"description": "CSV exports served as paginated JSON, NDJSON or CSV, from the files the rowpipe writer keeps.",
		},
		"security": security,
		"paths":    paths,
		"components": obj{
			"schemas": schemas,
			"securitySchemes": obj{
				"apiKey": obj{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"bearer": obj{"type": "http", "scheme": "bearer"},
			},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}
