package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/timer"
)

func TestTimerConfigKeys(t *testing.T) {
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timer.MessageDelayLevel != timer.DefaultDelayLevels || cfg.Timer.MaxDelay.duration() != timer.DefaultMaxDelay {
		t.Fatalf("sample config timer section %+v, want the defaults", cfg.Timer)
	}
	cfg, err = loadNodeConfig("", []string{"STRATA_TIMER_MESSAGE_DELAY_LEVEL=1s 2s", "STRATA_TIMER_MAX_DELAY=72h"})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bc.MessageDelayLevel != "1s 2s" || bc.TimerMaxDelay != 72*time.Hour {
		t.Fatalf("broker config delay levels %q max %s", bc.MessageDelayLevel, bc.TimerMaxDelay)
	}
	cfg, _ = loadNodeConfig("", []string{"STRATA_TIMER_MESSAGE_DELAY_LEVEL=1s soon"})
	if _, err := cfg.brokerConfig(); err == nil || !strings.Contains(err.Error(), "MessageDelayLevel") || !strings.Contains(err.Error(), "soon") {
		t.Fatalf("bad table: %v", err)
	}
}
