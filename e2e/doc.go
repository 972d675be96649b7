// Package e2e drives a real headless Chromium through authgate: the
// one-command demo (login forms, the legacy backend, silent refresh, sign
// out, the chooser and the error pages), single sign-on across
// subdomains with an auth host, the github preset against the GitHub
// emulator, and front-channel logout framed by the test provider.
//
// The tests need Chromium (`apt-get install -y chromium`). Without it they
// skip, unless AUTHGATE_REQUIRE_BROWSER=1, when they fail. Each step
// leaves a screenshot in testartifacts/e2e/<TestName>/ at the repository
// root. Caddy is process-global, so the tests of this package run one
// after another and each stops its Caddy before it ends.
package e2e
