// Command caddy is Caddy with the authgate module (and Caddy's standard
// modules) built in: go build -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate"
)

func main() {
	caddycmd.Main()
}
