package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orderflow/orderflow/sagas"
)

// timelineOptions say how renderSaga draws a saga.
type timelineOptions struct {
	// color: ANSI colours (a terminal without NO_COLOR).
	color bool
	// cols is the terminal's width, which the bars are fitted into; 0 for
	// a pipe or a file, which get bars of a fixed width.
	cols int
	// now ends the span of a saga still in progress.
	now time.Time
	// history adds the history lines after the steps.
	history bool
}

// Bar widths: fixed off a terminal, so that what a script or a test reads
// does not depend on where it runs; within bounds on one.
const (
	plainBarWidth = 30
	minBarWidth   = 10
	maxBarWidth   = 40
)

// Bar glyphs. A forward step is solid, an undo or closing action shaded,
// an action still in flight light; an outside event is a tick.
const (
	glyphDone    = '█'
	glyphUndo    = '▓'
	glyphFlight  = '░'
	glyphEvent   = '│'
	glyphNothing = '·'
)

// ANSI SGR codes.
const (
	sgrBold   = "1"
	sgrFaint  = "2"
	sgrRed    = "31"
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrCyan   = "36"
)

// painter colours text when it is on; off, it returns the text as is.
type painter bool

func (p painter) paint(code, s string) string {
	if !p || code == "" || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// statusColor is the colour of a saga's, a step's or an action's status.
func statusColor(status string) string {
	switch status {
	case "succeeded", "completed", "done":
		return sgrGreen
	case "failed":
		return sgrRed
	case "compensating", "compensated":
		return sgrYellow
	case "running":
		return sgrCyan
	case "pending", "skipped", "received":
		return sgrFaint
	}
	return ""
}

// statusMark is the symbol before a row.
func statusMark(kind rowKind, status string) string {
	if kind == rowEvent {
		return "⚑"
	}
	switch status {
	case "succeeded", "done":
		return "✓"
	case "failed":
		return "✗"
	case "running":
		return "▶"
	case "compensating":
		return "↺"
	case "compensated":
		return "↩"
	case "skipped":
		return "–"
	}
	return "·"
}

// rowKind is what a timeline row shows.
type rowKind int

const (
	rowStep  rowKind = iota // a forward step
	rowUndo                 // the compensation of a step
	rowClose                // the closing action of a saga called off
	rowEvent                // an outside event the saga reacted to
)

// tlRow is one row of the timeline, gathered from the view's steps and
// history.
type tlRow struct {
	kind   rowKind
	name   string
	status string
	// context is the service the row's command went to.
	context string
	// start is the first attempt's; end when the row settled (zero while in
	// flight); parkedAt when the saga was parked on it.
	start, end, parkedAt time.Time
	attempts             int
	operatorRetries      int
	// from is the service whose reply settled the row.
	from      string
	err, note string
}

func (r *tlRow) label() string {
	switch r.kind {
	case rowUndo:
		return "undo " + r.name
	case rowClose:
		return "close " + r.name
	}
	return r.name
}

// timelineRows gathers the rows of v: its steps in order, then the
// compensations, the closing action and the outside events in the order
// they happened.
func timelineRows(v sagas.View) []*tlRow {
	steps := make(map[string]*tlRow)
	var rows []*tlRow
	for _, st := range v.Steps {
		r := &tlRow{kind: rowStep, name: st.Name, status: string(st.Status), attempts: st.Attempts,
			start: parseSagaTime(st.StartedAt), err: st.Error}
		steps[st.Name] = r
		rows = append(rows, r)
	}
	undo := make(map[string]*tlRow)
	var later []*tlRow
	row := func(step string, compensation bool) *tlRow {
		if !compensation {
			return steps[step] // nil for a step the view does not list yet
		}
		r := undo[step]
		if r == nil {
			r = &tlRow{kind: rowUndo, name: step}
			if steps[step] == nil {
				// The closing action is named after itself, never a step.
				r.kind = rowClose
			}
			undo[step] = r
			later = append(later, r)
		}
		return r
	}
	for _, h := range v.History {
		d := h.Detail
		step, comp := detailString(d, "step"), detailBool(d, "compensation")
		switch h.Event {
		case sagas.TypeCommandIssued:
			r := row(step, comp)
			if r == nil {
				continue
			}
			if r.start.IsZero() {
				r.start = h.At
			}
			r.end, r.parkedAt = time.Time{}, time.Time{}
			r.context, _, _ = strings.Cut(detailString(d, "command"), ".")
			r.attempts = max(r.attempts, detailInt(d, "attempt"))
		case sagas.TypeStepSucceeded, sagas.TypeStepFailed, sagas.TypeStepTimedOut:
			r := row(step, false)
			if r == nil {
				continue
			}
			r.end = h.At
			switch h.Event {
			case sagas.TypeStepSucceeded:
				r.err = ""
			case sagas.TypeStepFailed:
				r.err = detailString(d, "reason")
			default:
				n := detailInt(d, "attempts")
				r.err = "no answer after " + plural(n, "attempt")
				if r.context != "" {
					r.err += " from " + r.context
				}
			}
		case sagas.TypeCompensationDone:
			r := row(step, true)
			r.end, r.parkedAt, r.err = h.At, time.Time{}, ""
			r.note = detailString(d, "note")
		case sagas.TypeSagaFailed:
			r := row(step, comp)
			if r == nil {
				continue
			}
			r.parkedAt = h.At
			r.err = detailString(d, "reason")
			if s := detailString(d, "detail"); s != "" {
				r.err += ": " + s
			}
		case sagas.TypeSagaRetried:
			if r := row(step, comp); r != nil {
				r.operatorRetries++
				r.parkedAt = time.Time{}
			}
		case sagas.TypeSagaStarted, sagas.TypeAttemptTimedOut, sagas.TypeCompensationStarted,
			sagas.TypeSagaCompleted, sagas.TypeSagaCompensated:
		default:
			switch {
			case detailBool(d, "external"):
				later = append(later, &tlRow{kind: rowEvent, name: h.Event, status: "received", start: h.At, end: h.At})
			case d["outcome"] != nil: // a reply to one of the saga's commands
				if r := row(step, comp); r != nil {
					r.from = detailString(d, "from")
				}
			}
		}
	}
	for _, r := range later {
		switch {
		case r.kind == rowEvent:
		case !r.end.IsZero() && r.kind == rowUndo:
			r.status = "compensated"
		case !r.end.IsZero():
			r.status = "done"
		case !r.parkedAt.IsZero() && v.Status == sagas.StatusFailed:
			r.status = "failed"
		case r.kind == rowUndo:
			r.status = "compensating"
		default:
			r.status = "running"
		}
	}
	return append(rows, later...)
}

// sagaSpan is the stretch of time the bars are scaled to: from the
// saga's start to its end; for a saga still going, to now; for a parked
// one, to its last event (it waits for an operator, not for time).
func sagaSpan(v sagas.View, now time.Time) (from, to time.Time) {
	from = parseSagaTime(v.StartedAt)
	if end := parseSagaTime(v.EndedAt); !end.IsZero() {
		return from, end
	}
	for _, h := range v.History {
		if h.At.After(to) {
			to = h.At
		}
	}
	if v.Status != sagas.StatusFailed && now.After(to) {
		to = now
	}
	if to.Before(from) {
		to = from
	}
	return from, to
}

// barCells places [start, end] of [from, to] on width cells: first cell,
// and the cell after the last; at least one cell is drawn.
func barCells(from, to, start, end time.Time, width int) (int, int) {
	span := to.Sub(from)
	if span <= 0 {
		return 0, 1
	}
	pos := func(t time.Time) float64 { return float64(t.Sub(from)) / float64(span) * float64(width) }
	a := int(math.Floor(pos(start)))
	b := int(math.Ceil(pos(end)))
	a = min(max(a, 0), width-1)
	b = min(max(b, a+1), width)
	return a, b
}

func drawBar(p painter, r *tlRow, from, to time.Time, width int) string {
	if r.start.IsZero() {
		return strings.Repeat(" ", width)
	}
	end, glyph := r.end, glyphDone
	switch {
	case r.kind == rowEvent:
		glyph = glyphEvent
	case end.IsZero() && !r.parkedAt.IsZero():
		end = r.parkedAt
		glyph = glyphFlight
	case end.IsZero():
		end = to
		glyph = glyphFlight
	case r.kind == rowUndo || r.kind == rowClose:
		glyph = glyphUndo
	}
	a, b := barCells(from, to, r.start, end, width)
	return strings.Repeat(string(glyphNothing), a) +
		p.paint(statusColor(r.status), strings.Repeat(string(glyph), b-a)) +
		strings.Repeat(string(glyphNothing), width-b)
}

// rowDuration is how long the row took, or has taken so far ("…").
func rowDuration(r *tlRow, to time.Time) string {
	switch {
	case r.start.IsZero() || r.kind == rowEvent:
		return ""
	case !r.end.IsZero():
		return sagaDuration(r.end.Sub(r.start))
	case !r.parkedAt.IsZero():
		return sagaDuration(r.parkedAt.Sub(r.start))
	}
	return sagaDuration(to.Sub(r.start)) + "…"
}

func rowAttempts(r *tlRow) string {
	if r.attempts == 0 {
		return ""
	}
	s := plural(r.attempts, "attempt")
	if retries := r.attempts - 1 - r.operatorRetries; retries > 0 {
		s += " (" + plural(retries, "retry") + ")"
	}
	if r.operatorRetries > 0 {
		s += ", " + plural(r.operatorRetries, "operator retry")
	}
	return s
}

// rowAnswer names the service that answered, or the one not answering.
func rowAnswer(p painter, r *tlRow) string {
	svc := func(name string) string { return p.paint(colors[name], name) }
	switch {
	case r.from != "":
		return "← " + svc(r.from)
	case r.context == "" || r.kind == rowEvent:
		return ""
	case r.end.IsZero() && r.parkedAt.IsZero():
		return "… " + svc(r.context)
	}
	return "✗ " + svc(r.context)
}

// renderSaga draws a saga: a header, a timeline with a row per step,
// compensation, closing action and outside event, and its history.
func renderSaga(w io.Writer, v sagas.View, o timelineOptions) error {
	p := painter(o.color)
	from, to := sagaSpan(v, o.now)
	rows := timelineRows(v)
	var b strings.Builder

	fmt.Fprintf(&b, "%s %s  %s v%d\n", p.paint(sgrBold, "saga"), p.paint(sgrBold, v.SagaID), v.Type, v.DefinitionVersion)
	if v.OrderID != "" {
		fmt.Fprintf(&b, "  order    %s\n", v.OrderID)
	}
	fmt.Fprintf(&b, "  status   %s\n", sagaStatusLine(p, v, from, o.now))
	fmt.Fprintf(&b, "  started  %s\n", formatSagaTime(from))
	if end := parseSagaTime(v.EndedAt); !end.IsZero() {
		fmt.Fprintf(&b, "  ended    %s, took %s\n", formatSagaTime(end), sagaDuration(end.Sub(from)))
	}
	if v.Status == sagas.StatusFailed {
		for _, r := range rows {
			if !r.parkedAt.IsZero() && r.status == "failed" {
				fmt.Fprintf(&b, "  parked   on %s since %s: %s\n", r.label(), relTime(r.parkedAt, from), p.paint(sgrRed, r.err))
			}
		}
		fmt.Fprintf(&b, "           orderflow sagas retry %s resumes it\n", v.SagaID)
	}

	// Column widths: every cell is padded before it is coloured, so that
	// the escapes never count.
	labelW, statusW, durW, attW, ansW := len("timeline"), 0, 0, 0, 0
	for _, r := range rows {
		labelW = max(labelW, utf8.RuneCountInString(r.label()))
		statusW = max(statusW, len(r.status))
		durW = max(durW, utf8.RuneCountInString(rowDuration(r, to)))
		attW = max(attW, len(rowAttempts(r)))
		ansW = max(ansW, utf8.RuneCountInString(rowAnswer(false, r)))
	}
	barW := plainBarWidth
	if o.cols > 0 {
		fixed := 2 + 2 + labelW + 2 + statusW + 2 + 2 + durW + 2 + attW + 2 + ansW
		barW = min(max(o.cols-fixed-1, minBarWidth), maxBarWidth)
	}

	b.WriteByte('\n')
	scaleL, scaleR := "0s", sagaDuration(to.Sub(from))
	gap := max(barW-len(scaleL)-len(scaleR), 1)
	fmt.Fprintf(&b, "  %s  %s%s%s%s\n", pad(p.paint(sgrBold, "timeline"), "timeline", labelW+2+statusW),
		"  ", scaleL, strings.Repeat(" ", gap), scaleR)
	for _, r := range rows {
		line := fmt.Sprintf("  %s %s  %s  %s  %*s  %s  %s",
			p.paint(statusColor(r.status), statusMark(r.kind, r.status)),
			pad(r.label(), r.label(), labelW),
			pad(p.paint(statusColor(r.status), r.status), r.status, statusW),
			drawBar(p, r, from, to, barW),
			durW, rowDuration(r, to),
			pad(rowAttempts(r), rowAttempts(r), attW),
			pad(rowAnswer(p, r), rowAnswer(false, r), ansW))
		switch {
		case r.err != "":
			line += "  " + p.paint(sgrRed, r.err)
		case r.note != "":
			line += "  " + p.paint(sgrFaint, r.note)
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}

	if o.history && len(v.History) > 0 {
		fmt.Fprintf(&b, "\n%s\n", p.paint(sgrBold, "history"))
		relW, evW := 0, 0
		steps := make(map[string]bool, len(v.Steps))
		for _, st := range v.Steps {
			steps[st.Name] = true
		}
		for _, h := range v.History {
			relW = max(relW, len(relTime(h.At, from)))
			evW = max(evW, len(h.Event))
		}
		for _, h := range v.History {
			line := fmt.Sprintf("  %*s  %s  %s", relW, relTime(h.At, from),
				pad(p.paint(historyColor(h), h.Event), h.Event, evW), historyDetail(h, steps))
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sagaStatusLine is the header's status: the status, why, and what it
// is at.
func sagaStatusLine(p painter, v sagas.View, from, now time.Time) string {
	s := p.paint(statusColor(string(v.Status)), string(v.Status))
	reason, cause := "", ""
	for _, h := range v.History {
		if h.Event == sagas.TypeCompensationStarted {
			reason, cause = detailString(h.Detail, "reason"), detailString(h.Detail, "cause")
		}
	}
	if reason != "" {
		s += ": " + withCause(reason, cause)
	}
	switch v.Status {
	case sagas.StatusRunning, sagas.StatusCompensating:
		if v.CurrentStep != "" {
			s += ", at " + v.CurrentStep
		}
		if !from.IsZero() && now.After(from) {
			s += ", for " + sagaDuration(now.Sub(from))
		}
	}
	return s
}

// withCause is a reason with the event that caused it, when that says
// more: "destination_not_served (after ShipmentRefused)".
func withCause(reason, cause string) string {
	if cause == "" || cause == reason {
		return reason
	}
	return reason + " (after " + cause + ")"
}

func historyColor(h sagas.HistoryEntry) string {
	switch h.Event {
	case sagas.TypeStepSucceeded, sagas.TypeSagaCompleted, sagas.TypeCompensationDone:
		return sgrGreen
	case sagas.TypeStepFailed, sagas.TypeStepTimedOut, sagas.TypeSagaFailed, sagas.TypeAttemptTimedOut:
		return sgrRed
	case sagas.TypeCompensationStarted, sagas.TypeSagaCompensated:
		return sgrYellow
	case sagas.TypeCommandIssued:
		return sgrCyan
	}
	return ""
}

// historyDetail is the gist of one history entry; steps holds the names
// of the saga's steps, to tell a compensation ("undo STEP") from the
// closing action ("close ACTION"): both are sent as compensations.
func historyDetail(h sagas.HistoryEntry, steps map[string]bool) string {
	d := h.Detail
	step := detailString(d, "step")
	action := step
	if detailBool(d, "compensation") {
		action = "undo " + step
		if !steps[step] {
			action = "close " + step
		}
	}
	switch h.Event {
	case sagas.TypeSagaStarted:
		s := fmt.Sprintf("%s v%d", detailString(d, "definition"), detailInt(d, "definition_version"))
		if o := detailString(d, "order_id"); o != "" {
			s += ", order " + o
		}
		return s
	case sagas.TypeCommandIssued:
		return fmt.Sprintf("%s → %s #%d", action, detailString(d, "command"), detailInt(d, "attempt"))
	case sagas.TypeStepSucceeded:
		return step
	case sagas.TypeStepFailed:
		return step + ": " + detailString(d, "reason")
	case sagas.TypeAttemptTimedOut:
		s := fmt.Sprintf("%s #%d unanswered", action, detailInt(d, "attempt"))
		if at := parseSagaTime(detailString(d, "retry_at")); !at.IsZero() {
			s += ", next attempt in " + sagaDuration(at.Sub(h.At))
		}
		return s
	case sagas.TypeStepTimedOut:
		return step + ": no answer after " + plural(detailInt(d, "attempts"), "attempt")
	case sagas.TypeCompensationStarted:
		return withCause(detailString(d, "reason"), detailString(d, "cause"))
	case sagas.TypeCompensationDone:
		s := "undo " + step
		if detailBool(d, "closing") || !steps[step] {
			s = "close " + step
		}
		if n := detailString(d, "note"); n != "" {
			s += ": " + n
		}
		return s
	case sagas.TypeSagaCompleted:
		return ""
	case sagas.TypeSagaCompensated:
		return detailString(d, "reason")
	case sagas.TypeSagaFailed:
		s := action + ": " + detailString(d, "reason")
		if x := detailString(d, "detail"); x != "" {
			s += ": " + x
		}
		return s
	case sagas.TypeSagaRetried:
		return fmt.Sprintf("%s from attempt #%d (operator)", action, detailInt(d, "attempt"))
	}
	if detailBool(d, "external") {
		return "outside event"
	}
	if d["outcome"] != nil {
		s := fmt.Sprintf("%s ← %s #%d: %s", action, detailString(d, "from"), detailInt(d, "attempt"), detailString(d, "outcome"))
		if r := detailString(d, "reason"); r != "" {
			s += " " + r
		}
		return s
	}
	// An entry this orderflow does not know: its detail as it is.
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+detailString(d, k))
	}
	return strings.Join(parts, " ")
}

// renderSagaList prints summaries as a table.
func renderSagaList(w io.Writer, items []sagas.Summary, now time.Time, color bool) error {
	p := painter(color)
	header := []string{"SAGA", "TYPE", "STATUS", "STEP", "ORDER", "AGE", "TOOK"}
	cells := [][]string{header}
	for _, s := range items {
		step := s.CurrentStep
		if step == "" {
			step = "-"
		}
		order := s.OrderID
		if order == "" {
			order = "-"
		}
		age, took := "-", "-"
		if start := parseSagaTime(s.StartedAt); !start.IsZero() {
			age = shortAge(now.Sub(start))
			if end := parseSagaTime(s.EndedAt); !end.IsZero() {
				took = sagaDuration(end.Sub(start))
			}
		}
		cells = append(cells, []string{s.SagaID, s.Type + " v" + strconv.Itoa(s.DefinitionVersion),
			string(s.Status), step, order, age, took})
	}
	widths := make([]int, len(header))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for n, row := range cells {
		parts := make([]string, len(row))
		for i, c := range row {
			shown := c
			if n > 0 && i == 2 {
				shown = p.paint(statusColor(c), c)
			}
			parts[i] = pad(shown, c, widths[i])
		}
		b.WriteString(strings.TrimRight(strings.Join(parts, "  "), " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pad pads shown (text possibly wrapped in colour escapes) with spaces to
// width, measuring plain (the same text without escapes).
func pad(shown, plain string, width int) string {
	if n := width - utf8.RuneCountInString(plain); n > 0 {
		return shown + strings.Repeat(" ", n)
	}
	return shown
}

// sagaDuration writes a saga's durations, which run from a millisecond
// to days: "0ms", "3.4ms", "120ms", "1.25s", "4m05s", "2h10m".
func sagaDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + sagaDuration(-d)
	case d == 0:
		return "0ms"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d.Round(100*time.Microsecond))/float64(time.Millisecond), 'f', -1, 64) + "ms"
	case d < time.Second:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Round(time.Millisecond).Seconds(), 'f', -1, 64) + "s"
	}
	return shortDuration(d)
}

// relTime is t relative to the saga's start, as the history shows it.
func relTime(t, from time.Time) string {
	if t.Before(from) {
		return sagaDuration(t.Sub(from))
	}
	return "+" + sagaDuration(t.Sub(from))
}

// shortAge is how long ago a saga started, in the list: "45s", "3m",
// "5h", "2d".
func shortAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(max(int(d.Seconds()), 0)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// parseSagaTime reads a view's RFC 3339 timestamp; "" (not reached) and
// anything unreadable are the zero time.
func parseSagaTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func formatSagaTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z07:00")
}

// The detail of a history entry is free-form JSON; these read one field
// of it whatever JSON type it came as.

func detailString(d map[string]any, key string) string {
	switch v := d[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(data)
	}
}

func detailBool(d map[string]any, key string) bool {
	b, _ := d[key].(bool)
	return b
}

func detailInt(d map[string]any, key string) int {
	switch v := d[key].(type) {
	case json.Number:
		n, _ := v.Int64()
		return int(n)
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// plural writes "1 attempt", "3 attempts", "2 retries".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(word, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + word + "s"
}
