package agent

import (
	"errors"
	"fmt"
)

// restError is IPA's RESTError: serialised in command_error as
// {type, code, message, details}; raised by the API as a fault with HTTP
// status Code.
type restError struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details string `json:"details"`
	// Status overrides the command status (VersionMismatch).
	status string
	cause  error
}

func (e *restError) Error() string { return e.Message + ": " + e.Details }
func (e *restError) Unwrap() error { return e.cause }

// IPA's error classes used here, with their messages.
func errInvalidCommand(details string) *restError {
	return &restError{Type: "InvalidCommandError", Code: 400, Message: "Invalid command", Details: details}
}

func errInvalidParams(details string) *restError {
	return &restError{Type: "InvalidCommandParamsError", Code: 400, Message: "Invalid command parameters", Details: details}
}

func errNotFound(what, id string) *restError {
	return &restError{Type: "RequestedObjectNotFoundError", Code: 404, Message: "Not found",
		Details: fmt.Sprintf("%s with id %s not found.", what, id)}
}

func errBusy(running string) *restError {
	return &restError{Type: "AgentIsBusy", Code: 409, Message: "Agent is busy", Details: "executing command " + running}
}

func errExecution(details string) *restError {
	return &restError{Type: "CommandExecutionError", Code: 500, Message: "Command execution failed", Details: details}
}

func errImageDownload(imageID, msg string) *restError {
	return &restError{Type: "ImageDownloadError", Code: 500, Message: "Error downloading image",
		Details: fmt.Sprintf("Download of image %s failed: %s", imageID, msg)}
}

func errImageChecksum(location, imageID, want, got string) *restError {
	return &restError{Type: "ImageChecksumError", Code: 500, Message: "Error verifying image checksum",
		Details: fmt.Sprintf("Image failed to verify against checksum. location: %s; image ID: %s; image checksum: %s; verification checksum: %s",
			location, imageID, want, got)}
}

func errImageWrite(device string, err error) *restError {
	return &restError{Type: "ImageWriteError", Code: 500, Message: "Error writing image to device",
		Details: fmt.Sprintf("Writing image to device %s failed with exit code 1. stdout: . stderr: %v", device, err), cause: err}
}

func errGeneric(details string) *restError {
	return &restError{Type: "RESTError", Code: 500, Message: "An error occurred", Details: details}
}

// asRESTError turns any command failure into what IPA puts in
// command_error: RESTErrors as they are, anything else as a
// CommandExecutionError with its text.
func asRESTError(err error) *restError {
	var re *restError
	if errors.As(err, &re) {
		return re
	}
	return errExecution(err.Error())
}
