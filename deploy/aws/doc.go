// Package awsdeploy holds no code: it is the folder of the AWS SAM template
// (template.yaml) that deploys the original system Herald replaces — an API
// Gateway WebSocket API and its three Go Lambdas — and of the tests that
// check that template without an AWS account (template_test.go).
//
// The package exists so that `go test ./...` runs those tests and `go vet
// ./...` finds a package here; README.md says how to build and deploy.
package awsdeploy
