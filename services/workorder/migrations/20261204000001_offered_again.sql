-- Recommended work (docs/history.md): a DECLINED or DEFERRED job stays recommended until a job
-- of a later work order offers it again; removing that job makes it recommended once more.
ALTER TABLE jobs ADD COLUMN offered_from UUID REFERENCES jobs (id) ON DELETE SET NULL;

CREATE UNIQUE INDEX jobs_offered_from ON jobs (offered_from) WHERE offered_from IS NOT NULL;
-- The "recommended work due" view: open declined and deferred jobs by due day.
CREATE INDEX jobs_recommended ON jobs (remind_after)
    WHERE state IN ('DECLINED', 'DEFERRED');
