package api

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// appendETag appends a strong validator of one answer: the dataset, the
// generation and its state (count, and the last stream sequence applied,
// which moves whenever the generation's bytes do), the page and the format,
// hashed with FNV-1a (64 bits) and quoted.
func appendETag(dst []byte, name string, h *schema.Header, offset uint64, limit int, format string) []byte {
	sum := fnv.New64a()
	sum.Write([]byte(name))
	sum.Write([]byte{0})
	var b [8]byte
	for _, v := range []uint64{h.Generation, h.Count, h.LastSeq, offset, uint64(limit)} {
		binary.LittleEndian.PutUint64(b[:], v)
		sum.Write(b[:])
	}
	sum.Write([]byte(format))
	dst = append(dst, '"')
	dst = fmt.Appendf(dst, "%016x", sum.Sum64())
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
