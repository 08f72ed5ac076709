package svc

import (
	"net/url"
	"strings"
)

// RedactURLs drops the user information of a comma-separated NATS URL
// list: it may hold a password or a token, which never goes to a log.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("REDACTED")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
