package iscsitarget

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

// targetMetrics are a Target's metrics; many targets sharing one
// Registerer add into the same collectors (no IQN label).
type targetMetrics struct {
	logins   *prometheus.CounterVec // result: success, failure
	commands *prometheus.CounterVec // status: good, check_condition, other
	read     prometheus.Counter
	written  prometheus.Counter
}

func newTargetMetrics(reg prometheus.Registerer) (targetMetrics, error) {
	r := &metrics.Registry{Reg: reg}
	m := targetMetrics{
		logins: r.CounterVec("iscsi", "logins_total",
			"iSCSI logins ended, by result (success: full feature phase reached; failure: refused).", "result"),
		commands: r.CounterVec("iscsi", "commands_total",
			"SCSI commands answered, by status (good, check_condition, other).", "status"),
		read:    r.Counter("iscsi", "read_bytes_total", "Bytes read from exported disks by SCSI commands that succeeded."),
		written: r.Counter("iscsi", "written_bytes_total", "Bytes written to exported disks by SCSI commands that succeeded."),
	}
	return m, r.Err
}

// command records one answered command of tk.
func (m targetMetrics) command(tk *task, res scsi.Result) {
	switch res.Status {
	case scsi.StatusGood:
		m.commands.WithLabelValues("good").Inc()
	case scsi.StatusCheckCondition:
		m.commands.WithLabelValues("check_condition").Inc()
		return
	default:
		m.commands.WithLabelValues("other").Inc()
		return
	}
	if tk.read {
		m.read.Add(float64(min(uint32(len(res.Data)), tk.edtl)))
	}
	if tk.write {
		m.written.Add(float64(tk.received))
	}
}
