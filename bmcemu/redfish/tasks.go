package redfish

// Tasks: the TaskService (TaskService.v1_1_5), its Tasks (Task.v1_4_3) and
// their task monitors, as DSP0266 "Asynchronous operations" has them. A
// long-running action answers 202 Accepted with a Location naming the
// task's monitor. A GET on the monitor answers 202 with the Task while the
// task is New or Running, and once it has ended the operation's own final
// answer: 200 with the Task for a task Completed, the operation's error
// (status and Redfish error body) for one in Exception. The Task resource
// itself always answers 200 and keeps its end state until it expires.
//
// Tasks belong to the system they act on: only that system's account sees
// them. At most maxTasks are kept: a new task drops the oldest finished
// one, and a finished task expires taskExpiry after its EndTime.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

const (
	taskServicePath = "/redfish/v1/TaskService"
	tasksPath       = taskServicePath + "/Tasks"
	monitorsPath    = taskServicePath + "/TaskMonitors"
	// maxTasks bounds the tasks kept, running and finished.
	maxTasks = 32
	// taskExpiry is how long a finished task (and its monitor) is kept.
	taskExpiry = time.Hour
	// taskRetryAfter is the Retry-After, in seconds, of a running task's
	// monitor.
	taskRetryAfter = 1
)

// The TaskState values this service goes through.
const (
	taskNew       = "New"
	taskRunning   = "Running"
	taskCompleted = "Completed"
	taskException = "Exception"
)

// task is one long-running operation on one system.
type task struct {
	id, name string
	sys      *system

	// Guarded by taskList.mu.
	state      string
	percent    int
	start, end time.Time
	messages   []message
	failure    *apiError // the monitor's final answer of a task in Exception
}

func (t *task) path() string        { return tasksPath + "/" + t.id }
func (t *task) monitorPath() string { return monitorsPath + "/" + t.id }
func (t *task) finished() bool      { return t.state == taskCompleted || t.state == taskException }

// taskRun is what a task's work reports through: progress, and messages
// for the Task's Messages.
type taskRun struct {
	l *taskList
	t *task
}

// progress sets PercentComplete and, unless m is nil, adds m to Messages.
func (r taskRun) progress(percent int, m *message) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.t.percent = percent
	if m != nil {
		r.t.messages = append(r.t.messages, *m)
	}
}

// taskList is the service's tasks.
type taskList struct {
	srv *Server

	mu    sync.Mutex
	tasks []*task // oldest first
	next  int
}

func newTaskList(s *Server) *taskList { return &taskList{srv: s} }

// errTooManyTasks answers a new task when maxTasks are all running.
func errTooManyTasks() *apiError {
	return &apiError{http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable",
		"The service is temporarily unavailable: " + strconv.Itoa(maxTasks) + " tasks are running. Retry in " + strconv.Itoa(taskRetryAfter) + " seconds."}
}

// start creates a task named name on sys and runs work in its own
// goroutine (one task of a name per system at a time: 409 while another
// runs), bounded by the service's lifetime: the task is Running until
// work returns, then Completed (nil) or in Exception (an *apiError is the
// monitor's answer; another error an internal error). Layer redfish's
// "task-fail" (op "task") fails it instead of running work.
func (l *taskList) start(sys *system, name string, work func(context.Context, taskRun) error) (*task, error) {
	now := l.srv.cfg.Now()
	l.mu.Lock()
	l.sweepLocked(now)
	for _, o := range l.tasks {
		if o.sys == sys && o.name == name && !o.finished() {
			l.mu.Unlock()
			return nil, errConflict(fmt.Sprintf("A %s task (%s) of %s is in progress; retry once it has ended.", name, o.path(), sys.hw.Name))
		}
	}
	if len(l.tasks) >= maxTasks && !l.dropOldestFinishedLocked() {
		l.mu.Unlock()
		return nil, errTooManyTasks()
	}
	l.next++
	t := &task{id: strconv.Itoa(l.next), name: name, sys: sys, state: taskNew, start: now}
	l.tasks = append(l.tasks, t)
	l.mu.Unlock()
	if fail, ok := l.srv.taskFault(sys); ok {
		work = func(context.Context, taskRun) error { return fail }
	}
	l.srv.record(sys, events.BMCRedfishTask, "task "+t.id+" "+name+" "+taskNew)
	go l.run(t, work)
	return t, nil
}

func (l *taskList) run(t *task, work func(context.Context, taskRun) error) {
	l.setState(t, taskRunning, nil)
	err := work(l.srv.lifetime(), taskRun{l, t})
	if err == nil {
		l.setState(t, taskCompleted, nil)
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errInternal(err.Error())
	}
	t.sys.log().Warn("task failed", "event", t.name, "err", err)
	l.setState(t, taskException, ae)
}

// setState moves t to state; an Exception carries failure, which becomes
// the last of its Messages too unless the work has already said why
// (a Critical message).
func (l *taskList) setState(t *task, state string, failure *apiError) {
	l.mu.Lock()
	t.state = state
	if t.finished() {
		t.end = l.srv.cfg.Now()
	}
	detail := "task " + t.id + " " + t.name + " " + state
	switch state {
	case taskCompleted:
		t.percent = 100
	case taskException:
		t.failure = failure
		if n := len(t.messages); n == 0 || t.messages[n-1].Severity != "Critical" {
			t.messages = append(t.messages, message{ODataType: messageType, MessageID: baseRegistry + failure.id, Message: failure.msg, Severity: "Critical"})
		}
		detail += ": " + failure.msg
	}
	l.mu.Unlock()
	l.srv.record(t.sys, events.BMCRedfishTask, detail)
}

// sweepLocked drops the tasks finished more than taskExpiry ago.
func (l *taskList) sweepLocked(now time.Time) {
	kept := l.tasks[:0]
	for _, t := range l.tasks {
		if !t.finished() || now.Sub(t.end) <= taskExpiry {
			kept = append(kept, t)
		}
	}
	clear(l.tasks[len(kept):])
	l.tasks = kept
}

// dropOldestFinishedLocked drops the oldest finished task; false when
// every task is still running.
func (l *taskList) dropOldestFinishedLocked() bool {
	for i, t := range l.tasks {
		if t.finished() {
			l.tasks = append(l.tasks[:i], l.tasks[i+1:]...)
			return true
		}
	}
	return false
}

// get returns task id when p's account may see it.
func (l *taskList) get(p principal, id string) (*task, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(l.srv.cfg.Now())
	for _, t := range l.tasks {
		if t.id == id && t.sys.visibleTo(p) {
			return t, true
		}
	}
	return nil, false
}

// visible lists the paths of the tasks p's account may see.
func (l *taskList) visible(p principal) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(l.srv.cfg.Now())
	var out []string
	for _, t := range l.tasks {
		if t.sys.visibleTo(p) {
			out = append(out, t.path())
		}
	}
	return out
}

// view renders t as a Task, with whether it has finished and, if it ended
// in Exception, its failure.
func (l *taskList) view(t *task) (taskResource, bool, *apiError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := taskResource{
		resource:        resource{ODataID: t.path(), ODataType: "#Task.v1_4_3.Task", ID: t.id, Name: t.name},
		TaskState:       t.state,
		TaskStatus:      "OK",
		PercentComplete: t.percent,
		StartTime:       t.start.Format(redfishTime),
		TaskMonitor:     t.monitorPath(),
		Messages:        append([]message{}, t.messages...),
	}
	if t.failure != nil {
		v.TaskStatus = "Critical"
	}
	if t.finished() {
		v.EndTime = t.end.Format(redfishTime)
	}
	return v, t.finished(), t.failure
}

// taskService is the TaskService resource.
type taskService struct {
	resource
	ServiceEnabled                  bool    `json:"ServiceEnabled"`
	CompletedTaskOverWritePolicy    string  `json:"CompletedTaskOverWritePolicy"`
	LifeCycleEventOnTaskStateChange bool    `json:"LifeCycleEventOnTaskStateChange"`
	DateTime                        string  `json:"DateTime"`
	Status                          *status `json:"Status"`
	Tasks                           odataID `json:"Tasks"`
}

// taskResource is a Task.
type taskResource struct {
	resource
	TaskState       string    `json:"TaskState"`
	TaskStatus      string    `json:"TaskStatus"`
	PercentComplete int       `json:"PercentComplete"`
	StartTime       string    `json:"StartTime"`
	EndTime         string    `json:"EndTime,omitempty"`
	TaskMonitor     string    `json:"TaskMonitor"`
	Messages        []message `json:"Messages"`
}

const (
	messageType = "#Message.v1_1_1.Message"
	// redfishTime is the Edm.DateTimeOffset layout of the Manager's DateTime.
	redfishTime = "2006-01-02T15:04:05-07:00"
)

func (s *Server) getTaskService(q *request) error {
	return q.ok(taskService{
		resource:                     resource{ODataID: taskServicePath, ODataType: "#TaskService.v1_1_5.TaskService", ID: "TaskService", Name: "Task Service"},
		ServiceEnabled:               true,
		CompletedTaskOverWritePolicy: "Oldest",
		DateTime:                     s.cfg.Now().Format(redfishTime),
		Status:                       enabledOK,
		Tasks:                        odataID{tasksPath},
	})
}

func (s *Server) getTasks(q *request) error {
	return q.ok(newCollection(tasksPath, "#TaskCollection.TaskCollection", "Task Collection", s.tasks.visible(q.who)))
}

func (s *Server) getTask(q *request) error {
	t, ok := s.tasks.get(q.who, q.r.PathValue("id"))
	if !ok {
		return errNotFound(q.r.URL.Path)
	}
	v, _, _ := s.tasks.view(t)
	return q.ok(v)
}

// getTaskMonitor answers 202 with the Task while it runs, then 200 with
// the finished Task — TaskState Completed, or Exception with the failure in
// its Messages. A failed task is not an HTTP error here, as on iDRAC and
// OpenBMC: sushy raises on any error status from a monitor, and Ironic
// 21.4's firmware update check catches only a 404, so an error answer would
// leave the node waiting for its timeout instead of failing with the
// task's message.
func (s *Server) getTaskMonitor(q *request) error {
	t, ok := s.tasks.get(q.who, q.r.PathValue("id"))
	if !ok {
		return errNotFound(q.r.URL.Path)
	}
	v, done, _ := s.tasks.view(t)
	if !done {
		q.w.Header().Set("Location", t.monitorPath())
		q.w.Header().Set("Retry-After", strconv.Itoa(taskRetryAfter))
		writeJSON(q.w, http.StatusAccepted, v)
		return nil
	}
	return q.ok(v)
}

// accepted answers the action that started t: 202 with the monitor as
// Location. The body is empty: sushy (4.3) takes a Task body's @odata.id
// as the monitor instead of Location, and a Task resource answers 200 even
// while running, so it would read the task as done at once.
func (q *request) accepted(t *task) error {
	q.w.Header().Set("Location", t.monitorPath())
	q.w.Header().Set("Retry-After", strconv.Itoa(taskRetryAfter))
	q.w.WriteHeader(http.StatusAccepted)
	return nil
}
