package httpx

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// RequestIDHeader carries the request id in requests and responses.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLength bounds a client-chosen request id.
const maxRequestIDLength = 200

type ctxKey int

const (
	requestIDKey ctxKey = iota
	loggerKey
)

// RequestID is middleware that gives every request an id: the client's
// X-Request-Id when it is 1-200 printable ASCII characters, else a new UUID.
// The id is stored in the request context (see RequestIDFrom) and set on
// the response before the handler runs, so every answer carries it.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !ValidRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ValidRequestID reports whether id is acceptable as a client-chosen
// request id: 1-200 printable ASCII characters.
func ValidRequestID(id string) bool {
	return PrintableASCII(id, maxRequestIDLength)
}

// PrintableASCII reports whether s is 1 to maxLen printable ASCII
// characters, the rule for client-chosen header values that end up in
// logs, events and database keys.
func PrintableASCII(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// RequestIDFrom returns the request id stored by RequestID, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Logger returns the request-scoped logger stored by AccessLog (it carries
// the request id, and the trace id when the request is traced), else
// slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// WithLogger stores l in ctx for Logger.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey, l)
}

// AccessLog is middleware that stores a request-scoped logger in the context
// and logs one structured line per request: method, path, route, status,
// bytes, duration, request id and trace id. The request-scoped logger
// carries the request id and the trace id, so every line logged through
// Logger names both, with or without the request's context. Place it
// inside RequestID and Trace.
func AccessLog(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			l := requestLogger(r, logger)
			rec := NewStatusRecorder(w)
			next.ServeHTTP(rec, r.WithContext(WithLogger(r.Context(), l)))
			level := slog.LevelInfo
			if rec.Status() >= 500 {
				level = slog.LevelError
			}
			l.LogAttrs(r.Context(), level, "http request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", RoutePattern(r)),
				slog.Int("status", rec.Status()),
				slog.Int64("bytes", rec.Bytes()),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr))
		})
	}
}

// requestLogger is logger with the request's id and trace id.
func requestLogger(r *http.Request, logger *slog.Logger) *slog.Logger {
	rid := slog.String("request_id", RequestIDFrom(r.Context()))
	if tid := telemetry.TraceID(r.Context()); tid != "" {
		return logger.With(rid, slog.String(telemetry.LogTraceID, tid))
	}
	return logger.With(rid)
}

// Recover is middleware that turns a handler panic into a 500 problem and
// an error log with the stack. http.ErrAbortHandler is re-raised, as
// net/http expects.
func Recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := NewStatusRecorder(w)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			Logger(r.Context()).LogAttrs(r.Context(), slog.LevelError, "handler panic",
				slog.Any("panic", v),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("stack", string(debug.Stack())))
			if !rec.Written() {
				WriteProblem(rec, NewProblem(http.StatusInternalServerError, SlugInternal,
					"an internal error occurred; quote the request id when reporting it"))
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// StatusRecorder wraps a ResponseWriter and remembers the status and the
// number of body bytes written.
type StatusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// NewStatusRecorder wraps w; a recorder passed in again is returned as is.
func NewStatusRecorder(w http.ResponseWriter) *StatusRecorder {
	if rec, ok := w.(*StatusRecorder); ok {
		return rec
	}
	return &StatusRecorder{ResponseWriter: w}
}

// WriteHeader records the status.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and counts bytes.
func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Status is the status written so far (200 when the handler wrote nothing).
func (s *StatusRecorder) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Written reports whether the status line was written.
func (s *StatusRecorder) Written() bool { return s.status != 0 }

// Bytes is the number of body bytes written.
func (s *StatusRecorder) Bytes() int64 { return s.bytes }

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack forwards to the underlying writer when it can hijack.
func (s *StatusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}
