package viewkit

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
)

// parcel exercises every option of the tags.
type parcel struct {
	Code    string    `db:"code,text,key,collate=C"`
	Owner   string    `db:"owner,text,fixed"`
	note    string    // not a column: no tag
	Skipped string    `db:"-"`
	Weight  int64     `db:"weight,bigint"`
	At      time.Time `db:"at,timestamptz,fixed"`
	Version int64     `db:"version,bigint"`
}

func TestColumnsFromTags(t *testing.T) {
	c := NewColumns[parcel]("parcels")
	if got, want := c.Names(), []string{"code", "owner", "weight", "at", "version"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if got, want := c.Updated(), []string{"weight", "version"}; !slices.Equal(got, want) {
		t.Errorf("updated %v, want %v", got, want)
	}
	want := "CREATE TABLE \"parcels_v2\" (\n" +
		"\t\t\tcode    text        PRIMARY KEY COLLATE \"C\",\n" +
		"\t\t\towner   text        NOT NULL,\n" +
		"\t\t\tweight  bigint      NOT NULL,\n" +
		"\t\t\tat      timestamptz NOT NULL,\n" +
		"\t\t\tversion bigint      NOT NULL\n" +
		"\t\t)"
	if got := c.CreateTable(projections.Tables{Version: 2}); got != want {
		t.Errorf("CreateTable:\n%s\nwant\n%s", got, want)
	}
	if got, want := c.SelectView(), `SELECT "code", "owner", "weight", "at", "version" FROM rm_parcels`; got != want {
		t.Errorf("SelectView %q, want %q", got, want)
	}
	p := parcel{Code: "P", Owner: "o", note: "n", Skipped: "s", Weight: 3, Version: 7}
	if got := c.values(&p); len(got) != 5 || got[0] != "P" || got[2] != int64(3) || got[4] != int64(7) {
		t.Errorf("values %v", got)
	}
	if got := c.rowVersion(&p); got != 7 {
		t.Errorf("version %d, want 7", got)
	}
	if got := key[string](c, &p); got != "P" {
		t.Errorf("key %q, want P", got)
	}
}

func TestColumnsRefuseBadTags(t *testing.T) {
	tests := []struct {
		name  string
		parse func() error
		want  string // in the error
	}{
		{"no type", parse[struct {
			ID string `db:"id"`
		}], `want "name,type[,options]"`},
		{"unknown option", parse[struct {
			ID      string `db:"id,text,key,unique"`
			Version int64  `db:"version,bigint"`
		}], `unknown option "unique"`},
		{"key not first", parse[struct {
			Version int64  `db:"version,bigint"`
			ID      string `db:"id,text,key"`
		}], "must be the key"},
		{"first not key", parse[struct {
			ID      string `db:"id,text"`
			Version int64  `db:"version,bigint"`
		}], "must be the key"},
		{"two keys", parse[struct {
			ID      string `db:"id,text,key"`
			Sub     string `db:"sub,text,key"`
			Version int64  `db:"version,bigint"`
		}], "the only key"},
		{"fixed key", parse[struct {
			ID      string `db:"id,text,key,fixed"`
			Version int64  `db:"version,bigint"`
		}], "cannot be fixed"},
		{"twice", parse[struct {
			ID      string `db:"id,text,key"`
			Again   string `db:"id,text"`
			Version int64  `db:"version,bigint"`
		}], "declared twice"},
		{"no version", parse[struct {
			ID string `db:"id,text,key"`
		}], "no column named version"},
		{"version not int64", parse[struct {
			ID      string `db:"id,text,key"`
			Version int    `db:"version,bigint"`
		}], "want int64"},
		{"every column fixed", parse[struct {
			ID      string `db:"id,text,key"`
			Version int64  `db:"version,bigint,fixed"`
		}], "every column is fixed"},
		{"unexported", parse[struct {
			ID      string `db:"id,text,key"`
			version int64  `db:"version,bigint"`
		}], "not exported"},
		{"no columns", parse[struct{ ID string }], "no db tags"},
		{"not a struct", parse[int], "not a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func parse[R any]() error {
	_, err := parseColumns[R]("t")
	return err
}

func TestNewRefusesAKeyOfAnotherType(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "key column sku is string") {
			t.Errorf("recovered %v, want a panic naming the key column's type", r)
		}
	}()
	New(Spec[[16]byte, count]{
		Name:     "counts",
		Prefix:   inventory.StreamPrefix,
		Register: inventory.RegisterEvents,
		Columns:  NewColumns[count]("counts"),
	})
}

func TestSchema(t *testing.T) {
	tb := counter()
	s := tb.Schema(projections.Tables{Version: 4})
	if len(s.Tables) != 1 || !strings.HasPrefix(s.Tables[0], `CREATE TABLE "counts_v4" (`) || len(s.Indexes) != 0 {
		t.Errorf("schema %q", s)
	}
	if got := tb.Tables(); !slices.Equal(got, []string{"counts"}) {
		t.Errorf("tables %v", got)
	}
}
