@conductor
Feature: The conductor dies mid-deploy
  A conductor fault (layer conductor, action kill) stops metalbed's
  conductor at once, as if its process died, and starts a new one on the
  same database and API address. The new conductor recovers the nodes as
  Ironic 21.4's does on start: a node left in "deploying" cannot be resumed
  and fails; a node in "wait call-back" is carried on: the new conductor
  prepares its ramdisk boot again (the boot servers' answers died with the
  old one) and reboots it, and the new agent's heartbeats carry the deploy
  to the end.

  Scenario: Killed while the node is deploying, the node fails on the restart
    Given an agent testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the conductor is to be killed at the "power on" step of node "node-0"
    When I deploy node "node-0"
    And the conductor restarts
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "The deploying state can't be resumed by conductor"
    And the timeline of node "node-0" shows "fault.conductor.kill" before "conductor.restart"

  Scenario: Killed while the node waits for its agent, the deploy resumes after the restart
    Given an agent testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the agent of machine "node-0" answers its lookup with 404 5 times
    When I deploy node "node-0"
    And the timeline of node "node-0" shows "conductor.power_on"
    And the conductor is killed and restarted
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the timeline of node "node-0" shows "conductor.restart" before "agent.lookup"
    And the timeline of node "node-0" shows "fault.conductor.kill"
