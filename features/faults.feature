@fault @pending
Feature: Faults injected at every layer
  Each fault is addressed by node and layer, reproducible with a seed, and
  the scenario asserts the node's final state, its last_error and the
  timeline.

  Every scenario here needs fault injection reachable from the API or
  `metalbed fault add` (internal/fault wired into the servers), and those
  that deploy need `metalbed up --enroll` with the netboot servers; the
  steps report which piece is missing when run with --godog.tags=@pending.

  Background:
    Given a metalbed testbed with 1 bios machine
    And node "node-0" is available
    And node "node-0" has instance_info for a "partition" image

  Scenario Outline: A deploy fault leaves the node in deploy failed with Ironic's error
    Given the fault "<fault>" is injected at layer "<layer>" for node "node-0" with seed 42
    When I deploy node "node-0"
    Then node "node-0" ends in provision state "deploy failed"
    And node "node-0" has last_error containing "<error>"
    And the timeline of node "node-0" shows "<timeline>"

    Examples:
      | layer   | fault                          | error                                   | timeline        |
      | ipmi    | no reply                       | IPMI call failed                        | ipmi timeout    |
      | ipmi    | completion code 0xC3           | IPMI call failed                        | ipmi error c3   |
      | ipmi    | power not carried out          | Timed out waiting for power state       | power on        |
      | dhcp    | no offer                       | Timeout reached while waiting for callback | dhcp discover |
      | tftp    | file missing                   | Timeout reached while waiting for callback | tftp error    |
      | http    | wrong checksum                 | checksum                                | http image      |
      | iscsi   | login refused                  | iSCSI                                   | iscsi login     |
      | iscsi   | connection reset after 1 MiB   | iSCSI                                   | iscsi reset     |
      | ramdisk | bootloader install FAILED      | bootloader                              | ramdisk error   |
      | disk    | too small                      | disk                                    | ramdisk error   |
      | agent   | heartbeats stop                | Timeout reached while waiting for callback | agent heartbeat |

  Scenario: The conductor is restarted mid-deploy and the deploy resumes or fails cleanly
    Given I deploy node "node-0"
    And node "node-0" reaches provision state "wait call-back"
    When the conductor is killed and restarted
    Then node "node-0" ends in provision state "deploy failed"
    And the timeline of node "node-0" shows "conductor restart"
