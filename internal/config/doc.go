// Package config reads, checks and prints the pbxgate configuration file.
//
// Load and Parse decode one YAML document strictly (an unknown key is an
// error naming its line), fill in the defaults documented on every field of
// Config (they live in defaults.go, and docs/configuration.md is kept in step
// by a test), and validate the whole file at once: every problem is reported,
// each as "file:line: field.path: message", and every one matches
// errors.Is(err, ErrInvalid). Warnings is the configuration audit: settings
// that are valid but probably not what an operator wants exposed to the
// internet. Marshal prints the effective configuration back as YAML.
//
// The package is pure: apart from Load reading the file it touches neither
// the file system nor the network. Whether certificate, key and CA files
// exist and parse is checked when the gateway builds its runtime, not here.
// It holds no state and never logs.
package config
