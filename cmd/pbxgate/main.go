// Command pbxgate is the single public door of a VoIP/PBX platform. All of
// its behaviour lives in internal/...; this file only hands over to the CLI.
package main

import (
	"os"

	"github.com/pbxgate/pbxgate/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
