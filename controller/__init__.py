"""The controller: selects tests, builds images, submits a pass and writes its reports."""
