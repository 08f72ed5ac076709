// Package svc holds what every rowpipe command does the same way around
// its service: the log/slog logger its LOG_LEVEL and LOG_FORMAT ask for,
// and NATS URLs fit for a log. pkg/schema owns the formats; this package
// owns none.
package svc
