package modules

import (
	"net/http"
)

// Gating of modules' HTTP handlers: 503 while the module is not running.

// HTTP wraps a module's web handler so that it answers 503 Service
// Unavailable ("module stopped") while the module is not running, as its
// files fail while it is stopped.
func (m *Manager) HTTP(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.Running(name) {
			http.Error(w, "module "+name+" stopped", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
