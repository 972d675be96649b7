package testidp

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

const pageCSS = `
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827;line-height:1.5}
main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1rem;margin:1.5rem 0 .5rem}
p.sub{margin:0 0 1.25rem;color:#4b5563}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.55rem .65rem;font-size:1rem;border:1px solid #6b7280;border-radius:.375rem}
input:focus,button:focus{outline:3px solid #2563eb;outline-offset:1px}
.buttons{display:flex;gap:.75rem;margin-top:1.25rem}
button{flex:1;padding:.6rem;font-size:1rem;border-radius:.375rem;border:1px solid #1d4ed8;cursor:pointer}
#signin{background:#1d4ed8;color:#fff}
#deny{background:#fff;color:#1d4ed8}
.error{background:#fef2f2;border:1px solid #b91c1c;color:#991b1b;padding:.5rem .75rem;border-radius:.375rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e5e7eb}
code{font-family:ui-monospace,Menlo,Consolas,monospace}
`

var loginTmpl = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<h1>Sign in</h1>
<p class="sub">to continue to <strong>{{.ClientID}}</strong></p>
{{if .Error}}<p class="error" id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" autocomplete="on">
<input type="hidden" name="tx" value="{{.TX}}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autocapitalize="none" spellcheck="false" required{{if not .Username}} autofocus{{end}}{{if .Error}} aria-describedby="error"{{end}}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{{if .Username}} autofocus{{end}}>
<div class="buttons">
<button type="submit" id="signin" name="action" value="signin">Sign in</button>
<button type="submit" id="deny" name="action" value="deny" formnovalidate>Deny</button>
</div>
</form>
{{if .Hints}}<section aria-labelledby="hints">
<h2 id="hints">Demo accounts</h2>
<table>
<thead><tr><th scope="col">Username</th><th scope="col">Password</th></tr></thead>
<tbody>{{range .Hints}}<tr><td><code>{{.Username}}</code></td><td><code>{{.Password}}</code></td></tr>{{end}}</tbody>
</table>
</section>{{end}}
</main>
</body>
</html>
`))

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{if .Code}}<p class="error" role="alert"><code id="error-code">{{.Code}}</code>: <span id="error-description">{{.Message}}</span></p>{{else}}<p id="message">{{.Message}}</p>{{end}}
</main>
</body>
</html>
`))

var logoutFramesTmpl = template.Must(template.New("logout").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Next}}<meta http-equiv="refresh" content="2;url={{.Next}}">
{{end}}<title>Signed out</title>
<style>` + pageCSS + `iframe{display:none}</style>
</head>
<body>
<main>
<h1>Signed out</h1>
<p id="message">You have been signed out{{if .Frames}} of {{len .Frames}} application{{if gt (len .Frames) 1}}s{{end}}{{end}}.</p>
{{if .Next}}<p><a id="continue" href="{{.Next}}">Continue</a></p>{{end}}
{{range $i, $u := .Frames}}<iframe class="frontchannel-logout" src="{{$u}}" title="Signing out of application {{$i}}"></iframe>
{{end}}</main>
</body>
</html>
`))

type logoutFramesData struct {
	Frames []string
	Next   string
}

// renderLogoutFrames renders the front-channel logout page. Its CSP allows
// exactly the origins of the iframes.
func (s *Server) renderLogoutFrames(w http.ResponseWriter, frames []string, next string) {
	var buf bytes.Buffer
	if err := logoutFramesTmpl.Execute(&buf, logoutFramesData{Frames: frames, Next: next}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var origins []string
	for _, f := range frames {
		if u, err := url.Parse(f); err == nil && !slices.Contains(origins, u.Scheme+"://"+u.Host) {
			origins = append(origins, u.Scheme+"://"+u.Host)
		}
	}
	setHTMLHeaders(w)
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src "+strings.Join(origins, " ")+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

type hint struct{ Username, Password string }

type loginData struct {
	ClientID, TX, Username, Error string
	Hints                         []hint
}

type pageData struct {
	Title, Code, Message string
}

func setHTMLHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No form-action: browsers apply it to the redirect that follows the
	// form submission, which goes to the client's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, req *authRequest, tx, username, errMsg string) {
	data := loginData{ClientID: req.clientID, TX: tx, Username: username, Error: errMsg}
	if s.opts.ShowHints {
		s.mu.Lock()
		for _, name := range s.userOrder {
			if u := s.users[name]; u != nil && u.Password != "" {
				data.Hints = append(data.Hints, hint{u.Username, u.Password})
			}
		}
		s.mu.Unlock()
	}
	render(w, status, loginTmpl, data)
}

func (s *Server) errorPage(w http.ResponseWriter, status int, code, msg string) {
	render(w, status, pageTmpl, pageData{Title: "Error", Code: code, Message: msg})
}

func (s *Server) renderPage(w http.ResponseWriter, status int, d pageData) {
	render(w, status, pageTmpl, d)
}

func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	setHTMLHeaders(w)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
