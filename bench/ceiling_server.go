package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gofiber/fiber/v2"
)

// The API ceiling is a separate process (this program re-executed with
// -serve-ceiling), so the server under test and the ceiling each have a
// process of their own and share the cores with the load generator the same
// way. It serves, for each case i, GET /c/<i> answering the constant body
// stored in DIR/<i>.body with the content type in DIR/<i>.type: the same
// bytes the real api answered for that case.

// ceilingBodyPath and ceilingTypePath name the files of case i.
func ceilingBodyPath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("%d.body", i))
}

func ceilingTypePath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("%d.type", i))
}

// serveCeiling runs the fiber ceiling server until SIGTERM/SIGINT.
func serveCeiling(dir, addr string) error {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		Concurrency:           1024,
	})
	for i := 0; ; i++ {
		body, err := os.ReadFile(ceilingBodyPath(dir, i))
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			return err
		}
		ctype, err := os.ReadFile(ceilingTypePath(dir, i))
		if err != nil {
			return err
		}
		ct := strings.TrimSpace(string(ctype))
		app.Get(fmt.Sprintf("/c/%d", i), func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, ct)
			return c.Send(body)
		})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		_ = app.Shutdown()
	}()
	return app.Listen(addr)
}
