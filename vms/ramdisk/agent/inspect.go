package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Inspection retries, as IPA's call_inspector: five attempts on a
// connection error or a 5xx, waiting 5 s growing to 30 s between them.
const (
	inspectAttempts = 5
	inspectWaitMin  = 5 * time.Second
	inspectWaitMax  = 30 * time.Second
)

// inspectionData is what IPA's default collector posts (inspector.py
// collect_default): the inventory, the root disk it would deploy to, the
// PXE interface and its configuration; "error" carries collection
// failures (null when none).
type inspectionData struct {
	Inventory     *Inventory     `json:"inventory"`
	RootDisk      *InvDisk       `json:"root_disk,omitempty"`
	BootInterface *string        `json:"boot_interface"`
	Configuration map[string]any `json:"configuration"`
	Error         *string        `json:"error"`
}

// inspect posts the inventory to InspectionCallbackURL, as IPA does
// before its lookup when the kernel command line has
// ipa-inspection-callback-url. It returns the node's UUID from the
// answer ("" when the answer has none). Failures are errors the caller
// logs: IPA goes on to its lookup either way.
func (a *Agent) inspect(ctx context.Context, inv *Inventory) (string, error) {
	data := inspectionData{
		Inventory:     inv,
		BootInterface: inv.Boot.PXEInterface,
		Configuration: map[string]any{"collectors": []string{"default"}, "managers": []map[string]any{
			{"name": "generic_hardware_manager", "version": "1.2"}}},
	}
	if d, err := a.installDevice(ctx); err == nil {
		rd := invDisk(d)
		data.RootDisk = &rd
	} else {
		a.say("WARNING: no suitable root device detected")
	}
	body, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("encode inspection data: %w", err)
	}
	a.say("posting collected data to %s", a.cfg.InspectionCallbackURL)
	wait := inspectWaitMin
	for attempt := 1; ; attempt++ {
		status, answer, err := a.postInspection(ctx, body)
		retry := err != nil || status >= 500
		if !retry || attempt == inspectAttempts {
			if err != nil {
				return "", fmt.Errorf("post inspection data: %w", err)
			}
			if status >= 400 {
				return "", fmt.Errorf("inspector %s error %d: %s", a.cfg.InspectionCallbackURL, status, faultString(answer))
			}
			var out struct {
				UUID string `json:"uuid"`
			}
			if err := json.Unmarshal(answer, &out); err != nil {
				return "", fmt.Errorf("inspection answer: %w", err)
			}
			return out.UUID, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*3/2, inspectWaitMax)
	}
}

// postInspection POSTs body once, without an API version header (IPA's
// plain requests.post): status and answer, or a transport error.
func (a *Agent) postInspection(ctx context.Context, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ironicCallDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.InspectionCallbackURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.cfg.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// runInspection is the agent's inspection step of Run: on success the
// node's UUID (sent with the lookup), else "" after saying why.
func (a *Agent) runInspection(ctx context.Context, inv *Inventory) string {
	if a.cfg.InspectionCallbackURL == "" {
		return ""
	}
	id, err := a.inspect(ctx, inv)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			a.say("ERROR: failed to perform inspection: %v", err)
		}
		return ""
	}
	a.say("inspection finished successfully, node UUID is %s", id)
	return id
}
