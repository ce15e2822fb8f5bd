//go:build !apiready

package ctl

import "github.com/spf13/cobra"

func resourceCommands(g *globals) []*cobra.Command { return nil }
