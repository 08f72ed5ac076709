// Package openapi serves the api's OpenAPI 3 document, openapi.json, with
// the figures the configuration sets filled in. A test in package api
// checks that every route the server registers is described there, and
// nothing else.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

//go:embed openapi.json
var document []byte

// Options are the figures the document states.
type Options struct {
	MaxLimit       int
	DefaultLimit   int
	DefaultDataset string
	ScanLimit      uint64
	// AuthOff drops the security requirement (API_AUTH=off).
	AuthOff bool
}

// Document returns openapi.json with o's figures set. It fails when the
// document lacks a member it sets.
func Document(o Options) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	figures := map[string]any{
		"/components/parameters/limit/schema/maximum":         o.MaxLimit,
		"/components/parameters/limit/schema/default":         o.DefaultLimit,
		"/components/parameters/dataset/schema/default":       o.DefaultDataset,
		"/components/schemas/Scan/properties/scanned/maximum": o.ScanLimit,
	}
	if o.AuthOff {
		figures["/security"] = []any{}
	}
	for ptr, v := range figures {
		if err := set(doc, ptr, v); err != nil {
			return nil, err
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// set replaces the member of doc that ptr, a JSON Pointer through objects,
// names by v. The member must exist.
func set(doc map[string]any, ptr string, v any) error {
	keys := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	obj := doc
	for _, k := range keys[:len(keys)-1] {
		next, ok := obj[k].(map[string]any)
		if !ok {
			return fmt.Errorf("openapi.json: no object %s on the way to %s", k, ptr)
		}
		obj = next
	}
	last := keys[len(keys)-1]
	if _, ok := obj[last]; !ok {
		return fmt.Errorf("openapi.json: no member %s", ptr)
	}
	obj[last] = v
	return nil
}
