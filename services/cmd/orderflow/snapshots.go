package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	handlers "github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// The snapshots command lists and drops the snapshots the command handlers
// keep of long streams (docs/adr/0150-snapshots-of-long-streams.md). They
// live beside the events, so the database is found as the projections
// command finds it (dbFlags), and --event-store points at the events when
// they are elsewhere. Dropping snapshots is always safe: streams then load
// from their first event until the next snapshot is taken.

func runSnapshots(ctx context.Context, args []string) error {
	return runSubcommand(ctx, "snapshots", args, []subcommand{
		{"list", runSnapshotsList},
		{"drop", runSnapshotsDrop},
	}, snapshotsUsage, os.Stdout, os.Stderr)
}

func snapshotsUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  orderflow snapshots list [--stream-prefix P] [flags]
  orderflow snapshots drop --stream S | --all | --older-than-schema [flags]

The command handlers snapshot a stream's state every so many events, in the
event store's database, and load a long stream from its newest snapshot of
the current schema. list shows them (stream, version, schema, size, when
taken); drop deletes them, which only makes loading slower until the next
snapshot is taken.

The database is --database-url URL (default: env OWNER_DATABASE_URL, else
DATABASE_URL), or --service SERVICE with a superuser URL (--admin-url,
default: env DATABASE_URL); --event-store names the events' database when it
is not the service's.

Run "orderflow snapshots list -h" for the flags.
`)
}

func runSnapshotsList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshots list", flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	prefix := fs.String("stream-prefix", "", "only the streams whose name starts with this (e.g. stock-)")
	asJSON := fs.Bool("json", false, `print {"items": [...]}`)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow snapshots list [flags]

Shows the snapshots of a service's streams: stream, version (of the last
event the snapshot reflects), schema (of the state's encoding; CURRENT says
whether this program's handlers load it), size in the table, and when it
was taken.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseSnapshotFlags(fs, args); err != nil {
		return err
	}
	pool, closeDB, err := openSnapshots(ctx, db)
	if err != nil {
		return err
	}
	defer closeDB()
	list, err := postgres.ListSnapshots(ctx, pool, *prefix)
	if err != nil {
		return err
	}
	if *asJSON {
		type item struct {
			Stream  string    `json:"stream"`
			Version int64     `json:"version"`
			Schema  int       `json:"schema"`
			Current bool      `json:"current"`
			Bytes   int64     `json:"bytes"`
			TakenAt time.Time `json:"taken_at"`
		}
		items := make([]item, 0, len(list))
		for _, s := range list {
			items = append(items, item{s.Stream, s.Version, s.Schema, currentSchema(s), s.Size, s.TakenAt})
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"items": items})
	}
	return printSnapshots(os.Stdout, list)
}

// currentSchema reports whether this program's handlers load s.
func currentSchema(s postgres.SnapshotInfo) bool {
	schema, ok := handlers.SnapshotSchema(s.Stream)
	return ok && schema == s.Schema
}

func printSnapshots(w io.Writer, list []postgres.SnapshotInfo) error {
	if len(list) == 0 {
		fmt.Fprintln(w, "no snapshots")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tVERSION\tSCHEMA\tCURRENT\tSIZE\tTAKEN AT")
	for _, s := range list {
		cur := "no"
		if currentSchema(s) {
			cur = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Stream, groupDigits(uint64(s.Version)), s.Schema, cur,
			byteSize(s.Size), s.TakenAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

// byteSize writes n bytes for a person.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func runSnapshotsDrop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshots drop", flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	stream := fs.String("stream", "", "drop the snapshots of this stream")
	all := fs.Bool("all", false, "drop every snapshot")
	older := fs.Bool("older-than-schema", false, "drop the snapshots whose schema is older than the one this program's handlers load, and those of streams the handlers keep none of (newer schemas, of a newer version of the service, are kept)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow snapshots drop --stream S | --all | --older-than-schema [flags]

Deletes snapshots: one stream's, all, or those no handler of this version
loads. Safe at any time, the services running or not: a stream without a
snapshot loads from its first event, and the next command past the
snapshot interval takes a new one.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseSnapshotFlags(fs, args); err != nil {
		return err
	}
	chosen := 0
	for _, set := range []bool{*stream != "", *all, *older} {
		if set {
			chosen++
		}
	}
	if chosen != 1 {
		fs.Usage()
		return usagef("snapshots drop: give exactly one of --stream S, --all or --older-than-schema")
	}
	pool, closeDB, err := openSnapshots(ctx, db)
	if err != nil {
		return err
	}
	defer closeDB()
	list, err := postgres.ListSnapshots(ctx, pool, *stream)
	if err != nil {
		return err
	}
	var drop []postgres.SnapshotInfo
	for _, s := range list {
		switch {
		case *stream != "" && s.Stream != *stream:
			// The prefix matched a longer name.
		case *older:
			if schema, ok := handlers.SnapshotSchema(s.Stream); !ok || s.Schema < schema {
				drop = append(drop, s)
			}
		default:
			drop = append(drop, s)
		}
	}
	n, err := postgres.DropSnapshots(ctx, pool, drop)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "dropped %d snapshot(s)\n", n)
	return nil
}

// parseSnapshotFlags parses flags that take no arguments.
func parseSnapshotFlags(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return usagef("%s: unexpected arguments %q", fs.Name(), pos)
	}
	return nil
}

// openSnapshots connects to the database that holds the snapshots: the
// service's, or the PostgreSQL event store --event-store names.
func openSnapshots(ctx context.Context, db dbFlags) (*pgxpool.Pool, func(), error) {
	d, err := db.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	pool, closeDB := d.pool, d.Close
	if d.externalStore() {
		if !strings.HasPrefix(d.eventStore, "postgres://") && !strings.HasPrefix(d.eventStore, "postgresql://") {
			d.Close()
			return nil, nil, usagef("the event store --event-store names keeps no snapshots: only the PostgreSQL store does")
		}
		ext, err := pgxpool.New(ctx, d.eventStore)
		if err != nil {
			d.Close()
			return nil, nil, usagef("the event store URL cannot be parsed as PostgreSQL's")
		}
		d.Close()
		pool, closeDB = ext, ext.Close
	}
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('es_snapshots') IS NOT NULL").Scan(&ok); err != nil {
		closeDB()
		return nil, nil, fmt.Errorf("look for the snapshots table: %w", err)
	}
	if !ok {
		closeDB()
		return nil, nil, errNoSnapshotsTable
	}
	return pool, closeDB, nil
}

// errNoSnapshotsTable is the answer for a database without es_snapshots.
var errNoSnapshotsTable = errors.New("the database has no snapshots table (es_snapshots): is it a service's event store, and has the service run since snapshots came in?")
