// Package schema owns every byte format that crosses a process boundary in
// rowpipe: dataset names and subjects, the message envelope on the ROWS
// stream (event kinds, headers, begin/end/abort/reject bodies),
// the record encoding (one CSV record as one compact JSON object), the
// fixed-size metadata header that opens every NDJSON generation file, the
// offset index beside it, the rejects file kept beside it, the file names
// under DATA_DIR, and the dataset state the writer publishes for ingesters.
//
// Nothing else in the repository formats these bytes by hand. Each format has
// a short document under docs/ (a diagram, its version, its checksum rule and
// what a reader does with a torn or unknown version); the code and the
// document change together.
package schema
