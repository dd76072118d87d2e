"""Transfer and security-posture checks: facts judged against the policy (pure)."""
