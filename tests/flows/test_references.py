"""References: resolved at run time against the run's inputs, step outputs, run fields and trigger filter."""

from __future__ import annotations

import pytest

from cvm.flows.references import RunContext, UnresolvedReference


class TestReferences:
    """References keep types when whole, interpolate as text inside strings, and map over lists with *."""

    context = RunContext(
        run_id="r1", started_at="2026-11-23T10:00:00+00:00", flow_id="demo", inputs={"days": 30, "ids": ["U1"]},
        outputs={"fuse": {"at_risk": [{"customer_id": "U1"}, {"customer_id": "U2"}], "counts": {"a": 1}}},
        trigger_filter={"trigger_type": "network_issues"},
    )

    def test_whole_reference_keeps_the_type(self):
        assert self.context.resolve("${inputs.days}") == 30
        assert self.context.resolve("${inputs.ids}") == ["U1"]
        assert self.context.resolve("${steps.fuse.output.at_risk.*.customer_id}") == ["U1", "U2"]
        assert self.context.resolve("${steps.fuse.output.at_risk.1.customer_id}") == "U2"
        assert self.context.resolve("${steps.fuse.output.at_risk[0].customer_id}") == "U1"
        assert self.context.resolve("${trigger.filter.trigger_type}") == "network_issues"

    def test_interpolation_and_escape(self):
        assert self.context.resolve("run ${run.id} of ${run.flow_id} at ${run.started_at}") == "run r1 of demo at 2026-11-23T10:00:00+00:00"
        assert self.context.resolve("counts ${steps.fuse.output.counts}") == 'counts {"a": 1}'
        assert self.context.resolve("literal $${inputs.days}") == "literal ${inputs.days}"
        assert self.context.resolve({"a": ["${inputs.days}", {"b": "${run.id}"}], "n": 3}) == {"a": [30, {"b": "r1"}], "n": 3}

    def test_missing_path_at_run_time(self):
        with pytest.raises(UnresolvedReference, match=r"no 'nope' there \(it has: at_risk, counts\)"):
            self.context.resolve("${steps.fuse.output.nope}")
        with pytest.raises(UnresolvedReference, match="'9' is not an index of a list of 2"):
            self.context.resolve("${steps.fuse.output.at_risk.9}")
        with pytest.raises(UnresolvedReference, match="step 'other' has no output"):
            self.context.resolve("${steps.other.output}")
