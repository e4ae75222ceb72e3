"""What the controller and the workers share: typed models of every YAML shape, test selection,
the test matrix, the content-addressed cache and the exceptions both sides raise."""
