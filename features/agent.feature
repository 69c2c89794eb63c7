@agent
Feature: Deploying through the agent
  With the direct deploy interface the deploy ramdisk runs metalbed's
  ironic-python-agent compatible agent: it looks its node up, heartbeats,
  and writes the image itself; the conductor drives it over the agent API
  as Ironic 21.4 does. Faults of layer agent break the agent the way real
  agents break (README "Injecting faults"): each leaves the node in the
  state Ironic leaves it in, with Ironic's last_error, and is recorded in
  the machine's timeline as fault.agent.<action>. As in Ironic 21.4, an
  image given by URL without kernel and ramdisk is taken for a whole-disk
  image unless instance_info says image_type partition.

  Scenario Outline: Local-boot deploy of a partition image through the agent
    Given an agent testbed with 1 <mode> machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the disk of machine "node-0" holds the image
    And machine "node-0" boots from its disk in <mode> mode
    And the timeline of node "node-0" shows "agent.lookup" before "conductor.write_image"
    And the timeline of node "node-0" shows "conductor.bootloader" before "instance.booted"

    Examples:
      | mode |
      | bios |
      | uefi |

  Scenario: The lookup is answered 404 and the deploy times out waiting for the agent
    Given an agent testbed with 1 bios machine and a deploy callback timeout of 20 seconds
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the agent of machine "node-0" answers its lookup with 404
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Timeout reached while waiting for callback for node"
    And the timeline of node "node-0" shows "fault.agent.lookup-404"

  Scenario: The agent stops heartbeating and the deploy times out
    Given an agent testbed with 1 bios machine and a deploy callback timeout of 20 seconds
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the agent of machine "node-0" stops heartbeating
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Timeout reached while waiting for callback for node"
    And the timeline of node "node-0" shows "agent.lookup"
    And the timeline of node "node-0" shows "fault.agent.heartbeat-stop"

  Scenario: The agent's write_image command FAILED fails the deploy with the agent's error
    Given an agent testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the agent of machine "node-0" fails the command "deploy.execute_deploy_step" with "disk on fire"
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "Agent returned error for deploy step {'interface': 'deploy', 'step': 'write_image', 'priority': 80, 'argsinfo': None} on node"
    And node "node-0" has last_error containing ": disk on fire."
    And the timeline of node "node-0" shows "fault.agent.command-failed"

  # The agent refuses write_image once with 409 (Agent is busy): as Ironic
  # does, the conductor waits for the agent's next heartbeat and tries
  # again. The agent heartbeats every 0.3-0.6 x heartbeat_timeout (300 s),
  # so this scenario takes two to three minutes.
  Scenario: The agent answers 409 busy once and the deploy goes on at its next heartbeat
    Given an agent testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image
    And node "node-0" has instance_info "image_type" set to "partition"
    And the agent of machine "node-0" answers the command "deploy.execute_deploy_step" with 409 busy once
    When I deploy node "node-0"
    Then node "node-0" is active
    And node "node-0" has no last_error
    And the timeline of node "node-0" shows "fault.agent.busy" before "conductor.write_image"
    And the timeline of node "node-0" shows "conductor.agent_busy"
