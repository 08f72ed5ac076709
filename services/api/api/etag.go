package api

import (
	"strconv"
	"strings"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// etagLen is the length of an identity ETag: 16 hex digits in quotes.
const etagLen = 18

// appendETag appends a strong validator of one answer: the dataset, the
// generation and its state (count, and the last stream sequence applied,
// which moves whenever the generation's bytes do), the page and the format.
// It is FNV-1a (64 bits) over the same bytes as before this function stopped
// allocating, so ETags clients hold stay valid.
func appendETag(dst []byte, name string, h *schema.Header, offset uint64, limit int, format string) []byte {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	sum := uint64(offset64)
	for i := 0; i < len(name); i++ {
		sum = (sum ^ uint64(name[i])) * prime64
	}
	sum *= prime64 // the 0 separator
	for _, v := range [5]uint64{h.Generation, h.Count, h.LastSeq, offset, uint64(limit)} {
		for j := range 8 {
			sum = (sum ^ (v >> (8 * j) & 0xff)) * prime64
		}
	}
	for i := 0; i < len(format); i++ {
		sum = (sum ^ uint64(format[i])) * prime64
	}
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := range 16 {
		dst = append(dst, hex[(sum>>(60-4*i))&0xf])
	}
	return append(dst, '"')
}

// appendGzipTag appends the ETag of the gzip-encoded answer whose identity
// ETag is tag: another representation, so another validator.
func appendGzipTag(dst, tag []byte) []byte {
	dst = append(dst, tag[:len(tag)-1]...)
	return append(dst, `-gz"`...)
}

// etagMatch reports whether an If-None-Match header matches tag (the
// identity validator) or its gzip variant; weak comparison, as RFC 9110
// asks for If-None-Match.
func etagMatch(header string, tag []byte) bool {
	if header == "" {
		return false
	}
	core := tag[1 : len(tag)-1]
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		part = strings.TrimPrefix(part, "W/")
		if len(part) < 2 || part[0] != '"' || part[len(part)-1] != '"' {
			continue
		}
		v := part[1 : len(part)-1]
		if v == string(core) || (len(v) == len(core)+3 && v[:len(core)] == string(core) && v[len(core):] == "-gz") {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or x-gzip) with
// a non-zero quality.
func acceptsGzip(header string) bool {
	if header == "" {
		return false
	}
	for part := range strings.SplitSeq(header, ",") {
		coding, prm, _ := strings.Cut(part, ";")
		coding = strings.TrimSpace(coding)
		if !strings.EqualFold(coding, "gzip") && !strings.EqualFold(coding, "x-gzip") {
			continue
		}
		prm = strings.TrimSpace(prm)
		if k, v, ok := strings.Cut(prm, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}
