//go:build !linux

package main

import "time"

func lowerTimerSlack() {}

func sleepPrecise(d time.Duration) { time.Sleep(d) }
