package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain/inventory"
)

// RelayParked counts the rows of relay_parked in the database at dbURL:
// the events a service's relay parked because they can never be
// published. The table is the relay's durable record, so it counts every
// parking whichever process did it and however often it restarted.
func RelayParked(ctx context.Context, dbURL string) (int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM relay_parked`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count relay_parked: %w", err)
	}
	return n, nil
}

// ParkedMetrics are the counters of parked messages a process keeps only
// in memory (since it last started): the coordinator's undecidable
// events and a service's unrunnable saga commands.
var ParkedMetrics = []string{"orderflow_saga_events_parked_total", "orderflow_command_consumer_parked_total"}

// ErrNoMetrics is returned by MetricSum when the process answered but
// does not expose the metric.
var ErrNoMetrics = errors.New("metric not exposed")

// MetricSum GETs base+"/metrics" and sums every series of metric (all
// label sets).
func MetricSum(ctx context.Context, base, metric string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %d", base, res.StatusCode)
	}
	return sumMetric(bufio.NewScanner(res.Body), metric)
}

func sumMetric(sc *bufio.Scanner, metric string) (float64, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s: %w", metric, ErrNoMetrics)
	}
	return sum, nil
}

// Holdings folds the stock events of the inventory's event store (a
// PostgreSQL store at dbURL) into the units each order holds of each sku
// (sku -> order id -> units): reserved, less released and consumed. The
// read model only has a sku's total, so this is what lets a reservation
// violation name the order that holds too much or too little.
func Holdings(ctx context.Context, dbURL string) (map[string]map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT type, data FROM es_events
		WHERE stream LIKE 'stock-%' AND type IN ($1, $2, $3) ORDER BY position`,
		inventory.TypeStockReserved, inventory.TypeStockReleased, inventory.TypeStockConsumed)
	if err != nil {
		return nil, fmt.Errorf("read the stock events: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int64{}
	for rows.Next() {
		var (
			typ  string
			data []byte
		)
		if err := rows.Scan(&typ, &data); err != nil {
			return nil, fmt.Errorf("read the stock events: %w", err)
		}
		var e inventory.StockReserved // the three share their fields
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode a %s event: %w", typ, err)
		}
		if out[e.SKU] == nil {
			out[e.SKU] = map[string]int64{}
		}
		if typ == inventory.TypeStockReserved {
			out[e.SKU][e.OrderID] += int64(e.Quantity)
		} else {
			out[e.SKU][e.OrderID] -= int64(e.Quantity)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the stock events: %w", err)
	}
	return out, nil
}
