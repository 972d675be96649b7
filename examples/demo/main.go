// Command demo runs authgate end to end with no account anywhere:
//
//	go run ./examples/demo
//
// then open http://localhost:8080 and sign in as alice / wonderland (an
// admin) or bob / builder. See internal/demo for what runs where.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/authgate/caddy-authgate/internal/demo"
)

func main() {
	var cfg demo.Config
	printOnly := flag.Bool("print", false, "print the demo's Caddyfile and exit")
	flag.StringVar(&cfg.Host, "host", "localhost", "host name the browser uses")
	flag.IntVar(&cfg.AppPort, "port", 8080, "port of the protected app (the chooser and admin-only sites take the next two)")
	flag.Parse()
	cfg.ChooserPort, cfg.AdminPort = cfg.AppPort+1, cfg.AppPort+2

	d, err := demo.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	defer d.Stop()
	if *printOnly {
		fmt.Print(d.Caddyfile)
		return
	}
	fmt.Printf(`
authgate demo is running.

  %s   the legacy app behind authgate (provider "corp")
  %s   the same app offering two providers (sign-in page)
  %s   admins only: bob gets the 403 page

Sign in as alice / wonderland (group admins) or bob / builder (group users).
The providers are %s and %s; sign out at /oauth2/logout.
Press Ctrl+C to stop.
`, d.AppURL, d.ChooserURL, d.AdminURL, d.Corp.Issuer(), d.Partner.Issuer())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
