@api
Feature: Ironic API compatibility
  Clients written for Ironic (the baremetal CLI, gophercloud, metal3) rely
  on its version negotiation, its error body, its locking and its state
  machine's refusals. metalbed's provisioner answers as Ironic 21.4 does.

  Scenario Outline: Unsupported API versions are refused with 406
    Given the provisioner is running
    When I send "GET" "/v1/nodes" with API version "<version>"
    Then the response status is 406
    And the error is Ironic's 406 "Not Acceptable" saying "<says>"

    Examples:
      | version | says                                                                                                                    |
      | 1.99    | Version 1.99 was requested but the minor version is not supported by this service. The supported version range is: [1.1, 1.82]. |
      | 1.0     | Version 1.0 was requested but the minor version is not supported by this service. The supported version range is: [1.1, 1.82].  |
      | abc     | Invalid value for X-OpenStack-Ironic-API-Version header                                                                  |

  Scenario Outline: The negotiated version is echoed in the response headers
    Given the provisioner is running
    When I send "GET" "/v1/nodes" with API version "<asked>"
    Then the response status is 200
    And the response header "X-OpenStack-Ironic-API-Version" is "<got>"
    And the response header "X-OpenStack-Ironic-API-Minimum-Version" is "1.1"
    And the response header "X-OpenStack-Ironic-API-Maximum-Version" is "1.82"
    And the response header "OpenStack-API-Version" is "baremetal <got>"

    Examples:
      | asked  | got  |
      | latest | 1.82 |
      | 1.82   | 1.82 |
      | 1.31   | 1.31 |
      |        | 1.1  |

  Scenario: The root document advertises the v1 API and its version range
    Given the provisioner is running
    When I send "GET" "/" with API version ""
    Then the response status is 200
    And the response body has "default_version.id" equal to "v1"
    And the response body has "default_version.min_version" equal to "1.1"
    And the response body has "default_version.version" equal to "1.82"

  Scenario: A field newer than the requested version is not acceptable
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the ipmi driver
    When I send "GET" "/v1/nodes/{node-0}?fields=description" with API version "1.50"
    Then the response status is 406
    And the error is Ironic's "Client" fault saying "Request not acceptable."

  Scenario: A missing node is a 404 with Ironic's error body
    Given the provisioner is running
    When I send "GET" "/v1/nodes/no-such-node"
    Then the response status is 404
    And the response header "Content-Type" is "application/json"
    And the error is Ironic's "Client" fault saying "Node no-such-node could not be found."

  Scenario: A node with an unknown driver is refused
    Given the provisioner is running
    When I send "POST" "/v1/nodes" with body:
      """
      {"name": "nodriver-node", "driver": "no-such-driver"}
      """
    Then the response status is 400
    And the error is Ironic's "Client" fault saying "no-such-driver"

  Scenario: A second action while the first runs gets NodeLocked (409)
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    When I ask for "power on" on node "node-0" through the API
    Then the response status is 202
    When I ask for "power off" on node "node-0" through the API
    Then the response status is 409
    And the error is Ironic's "Client" fault saying "is locked by host scenario-conductor, please retry after the current operation is completed."
    And node "node-0" reaches power state "power on"
    And the BMC of machine "node-0" reports chassis power on

  Scenario: A provision action while a power action runs gets NodeLocked (409)
    Given a metalbed environment with 1 machine
    And node "node-0" is manageable
    When I ask for "power on" on node "node-0" through the API
    And I ask to "provide" node "node-0"
    Then the response status is 409
    And the error is Ironic's "Client" fault saying "is locked by host scenario-conductor"

  Scenario Outline: A provision action the state machine does not allow is refused
    Given a metalbed environment with 1 machine
    And <setup>
    When I ask to "<verb>" node "node-0"
    Then the response status is 400
    And the error is Ironic's "Client" fault saying "The requested action "<verb>" can not be performed on node "{node-0}" while it is in state "<state>"."
    And node "node-0" has provision state "<state>"

    Examples:
      | setup                                           | verb    | state      |
      | machine "node-0" is enrolled with the ipmi driver | provide | enroll     |
      | machine "node-0" is enrolled with the ipmi driver | active  | enroll     |
      | node "node-0" is manageable                     | active  | manageable |
      | node "node-0" is available                      | provide | available  |
      | node "node-0" is available                      | inspect | available  |

  Scenario: An invalid MAC is refused by the baremetal CLI with Ironic's message
    Given a metalbed environment with 1 machine
    And machine "node-0" is enrolled with the ipmi driver
    When I run "baremetal port create zz --node {node-0}"
    Then the command fails
    And its output says "Expected valid MAC address for address: zz (HTTP 400)"
