package sdk

import (
	"context"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	for i := int64(1); i <= 5; i++ {
		next, _ := m.NextSeq(ctx)
		if next != i {
			t.Fatalf("NextSeq %d, want %d", next, i)
		}
		if err := m.Append(ctx, next, connectortest.Message(int(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Append(ctx, 9, connectortest.Message(9)); err == nil {
		t.Error("Append accepted a gap")
	}
	if evs, _ := m.Unacked(ctx, 3, 0); len(evs) != 2 || evs[0].Seq != 4 || evs[0].Event.ID != "m4" {
		t.Errorf("Unacked(3) = %+v", evs)
	}
	if evs, _ := m.Unacked(ctx, 3, 1); len(evs) != 1 || evs[0].Seq != 4 {
		t.Errorf("Unacked(3, limit 1) = %+v", evs)
	}
	_ = m.Acked(ctx, 2)
	if evs, _ := m.Unacked(ctx, 0, 0); len(evs) != 3 || evs[0].Seq != 3 {
		t.Errorf("after Acked(2): %+v", evs)
	}
	_ = m.Acked(ctx, 10)
	if evs, _ := m.Unacked(ctx, 0, 0); len(evs) != 0 {
		t.Errorf("after Acked(10): %+v", evs)
	}
	if next, _ := m.NextSeq(ctx); next != 11 {
		t.Errorf("NextSeq after acking beyond the log: %d, want 11", next)
	}
	if _, _, ok, _ := m.TxnResult(ctx, "t"); ok {
		t.Error("unknown txn found")
	}
	_ = m.SaveTxnResult(ctx, "t", nil, &connector.Error{Code: connector.ErrForbidden})
	if res, e, ok, _ := m.TxnResult(ctx, "t"); !ok || res != nil || e.Code != connector.ErrForbidden {
		t.Errorf("TxnResult = %v %v %v", res, e, ok)
	}
}
