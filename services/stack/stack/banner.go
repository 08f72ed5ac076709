package stack

import (
	"fmt"
	"io"
	"net"
)

// printBanner tells a person at a terminal what is running and how to try
// it. The key is shown only when the stack made it (dev mode); a key the
// operator configured is never printed.
func printBanner(w io.Writer, addr net.Addr, devKey string, haveKeys bool, dataset, natsURL string, natsAuth bool) {
	base := "http://" + hostForURL(addr)
	fmt.Fprintf(w, "\nrowpipe is running\n")
	fmt.Fprintf(w, "  api        %s   (OpenAPI: %s/openapi.json)\n", base, base)
	fmt.Fprintf(w, "  console    %s/   (open it in a browser; it asks for the key)\n", base)
	switch {
	case natsURL != "" && natsAuth:
		fmt.Fprintf(w, "  nats       %s   (log in as ingester or admin: NATS_USER, and NATS_PASSWORD from NATS_INGESTER_PASSWORD or NATS_ADMIN_PASSWORD)\n", natsURL)
	case natsURL != "":
		fmt.Fprintf(w, "  nats       %s   (bin/ingester and the nats CLI connect here)\n", natsURL)
	}
	switch {
	case devKey != "":
		fmt.Fprintf(w, "  dev key    %s   (kept in DATA_DIR/.dev-api-key; set API_KEYS to use your own)\n", devKey)
		fmt.Fprintf(w, "\ntry:\n  curl -H 'X-API-Key: %s' '%s/fetch-data?dataset=%s&limit=3&offset=0'\n\n", devKey, base, dataset)
	case haveKeys:
		fmt.Fprintf(w, "\ntry:\n  curl -H \"X-API-Key: $API_KEY\" '%s/fetch-data?dataset=%s&limit=3&offset=0'\n\n", base, dataset)
	default:
		fmt.Fprintf(w, "\ntry:\n  curl '%s/fetch-data?dataset=%s&limit=3&offset=0'\n\n", base, dataset)
	}
}
