//go:build !linux

package pgserver

import "context"

// killRemains does nothing without /proc to find the processes of the
// last postmaster; a Restart beside backends that still hold its shared
// memory then fails, and may be tried again once they have noticed.
func (s *Server) killRemains(context.Context) error { return nil }
