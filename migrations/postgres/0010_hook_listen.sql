-- Where a saga hook is called: comma-separated `step:phase` points
-- (`authorize-payment:before,...`); NULL: at every step and phase.
ALTER TABLE plugin_versions ADD COLUMN listen TEXT;
