package main

import (
	"net/http"

	"cheshire/providers/apps"
)

// appsHandler is the page of each app, /apps/NAME/, on the node's HTTPS
// listener. A visitor signs in as git's do (a client certificate from
// /ca, or a user and token of /git/tokens); the page's sessions are made
// through the files of that user's namespace, so its /apps may be
// another node's, imported.
func (p *parts) appsHandler() http.Handler {
	return apps.Handler(apps.WebOptions{
		User: p.gitUser,
		Root: p.userRoot,
	})
}
