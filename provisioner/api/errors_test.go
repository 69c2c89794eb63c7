package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWriteErrorCancelledIsNotAnError: a request cut short by a cancelled
// context (a client gone, a server shutting down, as at the end of every
// `metalbed demo`) is answered 503 without an ERROR log line; any other
// server-side failure is still logged at ERROR.
func TestWriteErrorCancelledIsNotAnError(t *testing.T) {
	for _, c := range []struct {
		err       error
		status    int
		wantError bool
	}{
		{fmt.Errorf("power on: %w", context.Canceled), 503, false},
		{errors.New("disk on fire"), 500, true},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		rec := httptest.NewRecorder()
		writeError(rec, log, c.err)
		if rec.Code != c.status {
			t.Errorf("%v: status %d, want %d", c.err, rec.Code, c.status)
		}
		if got := strings.Contains(logs.String(), "level=ERROR"); got != c.wantError {
			t.Errorf("%v: ERROR logged %v, want %v:\n%s", c.err, got, c.wantError, logs.String())
		}
	}
}
