"""References: resolved at run time against the run's inputs, step outputs, run fields and trigger filter."""

from __future__ import annotations

import pytest

from cvm.flows.references import RunContext, UnresolvedReference, parse_reference


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

    def test_a_huge_value_inside_text_is_refused_but_kept_whole_as_data(self):
        """An e-mail body interpolating a 100k-customer step output was megabytes of text."""
        many = [{"customer_id": f"U{i}", "status": "success"} for i in range(100_000)]
        context = RunContext(
            run_id="r1", started_at="2026-11-23T10:00:00+00:00", flow_id="demo", inputs={}, outputs={"decide": {"results": many}},
        )
        with pytest.raises(UnresolvedReference, match=r"\$\{steps.decide.output\} is [\d,]+ characters as text; .* at most 1,000,000"):
            context.resolve("Results: ${steps.decide.output}")
        assert context.resolve("${steps.decide.output.results}") is many
        assert context.resolve("${steps.decide.output.results.0.customer_id} and more") == "U0 and more"

    def test_missing_path_at_run_time(self):
        with pytest.raises(UnresolvedReference, match=r"no 'nope' there \(it has: at_risk, counts\)"):
            self.context.resolve("${steps.fuse.output.nope}")
        with pytest.raises(UnresolvedReference, match="'9' is not an index of a list of 2"):
            self.context.resolve("${steps.fuse.output.at_risk.9}")
        with pytest.raises(UnresolvedReference, match="step 'other' has no output"):
            self.context.resolve("${steps.other.output}")


class TestCustomerAndVariables:
    """``${customer.FIELD}`` reads the run's customer; a bare ``${NAME}`` an input, else a variable (``CVM_NAME``)."""

    context = RunContext(
        run_id="r1", started_at="2026-11-23T10:00:00+00:00", flow_id="demo", inputs={"team": "ops@example.com"}, outputs={},
        customer={"id": "U1", "name": "Ann", "tags": ["a", "b"]}, variables={"admin_email": "admin@example.com", "team": "x"},
    )

    def test_customer_and_bare_names(self):
        assert self.context.resolve("${customer.id}") == "U1"
        assert self.context.resolve("${customer.tags.1}") == "b"
        assert self.context.resolve("Hello ${customer.name} (${customer.id})") == "Hello Ann (U1)"
        assert self.context.resolve("${admin_email}") == "admin@example.com"
        assert self.context.resolve("${team}") == "ops@example.com"  # an input wins over a variable

    def test_what_cannot_be_resolved_says_how_to_fix_it(self):
        with pytest.raises(UnresolvedReference, match="no input or variable 'oncall'; set CVM_ONCALL"):
            self.context.resolve("${oncall}")
        with pytest.raises(UnresolvedReference, match=r"no 'email' there \(it has: id, name, tags\)"):
            self.context.resolve("${customer.email}")
        without = RunContext(run_id="r", started_at="t", flow_id="f", inputs={}, outputs={})
        with pytest.raises(UnresolvedReference, match="this run has no customer; give the input customer_id"):
            without.resolve("${customer.id}")

    @pytest.mark.parametrize(("text", "message"), [
        ("customer", "${customer} needs a field"), ("my var", "unknown reference root 'my var'"),
        ("a.b", "unknown reference root 'a'"),
    ])
    def test_bad_references(self, text, message):
        with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")):
            parse_reference(text)
