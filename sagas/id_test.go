package sagas

import "testing"

func TestUUIDv5(t *testing.T) {
	// The name-based UUID of www.example.com in the DNS namespace, as
	// every conforming implementation computes it.
	dns := mustParseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	if got, want := uuidV5(dns, "www.example.com"), "2ed6657d-e927-568b-95e1-2665a8aea6a2"; got != want {
		t.Errorf("uuidV5 = %s, want %s", got, want)
	}
}

// TestDerivedIDsAreFixed pins the derived ids: the orders service hands
// saga ids to clients and the services remember command ids, so a change
// of namespace or name scheme would split one order into two sagas and
// make receivers run commands again.
func TestDerivedIDsAreFixed(t *testing.T) {
	const orderID = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"
	tests := []struct {
		name, got, want string
	}{
		{"SagaID", SagaID(orderID), "c616eef7-34a7-58e2-98b7-dcf5eb198fe6"},
		{"ShipmentID", ShipmentID(SagaID(orderID)), "13493612-dc95-509c-ac58-881783589928"},
		{"CommandID", CommandID(SagaID(orderID), "reserve_inventory", 1, false), "8e189bb7-0ddb-5802-9695-9c1ee0339702"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	if SagaID(orderID) == SagaID("11111111-2222-4333-8444-555555555555") {
		t.Errorf("two orders share a saga id")
	}
}

func TestMustParseUUIDRefusesTypos(t *testing.T) {
	for _, s := range []string{"", "dc347e10-1d83-48d5-834f-771da7adbee", "dc347e10x1d83-48d5-834f-771da7adbeee", "zc347e10-1d83-48d5-834f-771da7adbeee"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("mustParseUUID(%q) did not panic", s)
				}
			}()
			mustParseUUID(s)
		}()
	}
}
