package main

import (
	"context"
	"errors"
)

// runBench is filled in by the event store benchmark.
func runBench(ctx context.Context, args []string) error {
	return errors.New("bench: not built yet")
}
