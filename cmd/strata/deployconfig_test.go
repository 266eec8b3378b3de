package main

import (
	"path/filepath"
	"testing"

	"github.com/stratamq/strata/broker/store"
)

// The compose cluster's broker configs load as `strata broker --config` reads them, with the
// environment the compose file gives (integration/deploy_test.go checks the compose wiring).
func TestComposeBrokerConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../deployments/compose/broker-*.yaml")
	if err != nil || len(files) != 2 {
		t.Fatalf("compose broker configs %v (%v), want two", files, err)
	}
	groups := map[string]bool{}
	for _, f := range files {
		cfg, err := loadNodeConfig(f, []string{"STRATA_TIER_S3_ACCESS_KEY=strata", "STRATA_TIER_S3_SECRET_KEY=strata-secret"})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		bc, err := cfg.brokerConfig()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if groups[bc.BrokerName] {
			t.Errorf("%s: group %s served twice", f, bc.BrokerName)
		}
		groups[bc.BrokerName] = true
		if bc.BucketURL == "" || !bc.S3.UsePathStyle || bc.S3.AccessKeyID != "strata" || bc.AdvertisedAddr == "" {
			t.Errorf("%s: tier or advertised address not configured: bucket %q, path style %v, advertised %q",
				f, bc.BucketURL, bc.S3.UsePathStyle, bc.AdvertisedAddr)
		}
		if bc.Store.FlushMode != store.FlushAsync || bc.Store.SealAfter == 0 {
			t.Errorf("%s: store %+v", f, bc.Store)
		}
	}
}
