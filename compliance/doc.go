// Package compliance runs the checks of the Conversations compliance
// tester (caas), as a client would, against a live "hearth dev" process:
// make compliance. The test is behind the build tag "compliance".
package compliance
