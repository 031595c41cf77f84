-- Digital vehicle inspections (docs/inspections.md). A template is a list of items; an
-- inspection copies its template's items when it starts, so editing a template changes no
-- inspection already under way.
CREATE TABLE inspection_templates (
    id         UUID PRIMARY KEY,
    name       TEXT        NOT NULL,
    is_default BOOLEAN     NOT NULL DEFAULT false,
    -- [{"section": "Brakes", "label": "Front brake pads"}, ...] in order.
    items      JSONB       NOT NULL,
    updated_by TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX inspection_templates_name ON inspection_templates (lower(name));
CREATE UNIQUE INDEX inspection_templates_one_default ON inspection_templates (is_default) WHERE is_default;

CREATE TABLE inspections (
    id            UUID PRIMARY KEY,
    work_order_id UUID        NOT NULL CONSTRAINT inspections_one_per_order UNIQUE REFERENCES work_orders (id),
    template_name TEXT        NOT NULL,
    state         TEXT        NOT NULL CHECK (state IN ('IN_PROGRESS', 'COMPLETED')),
    started_by    TEXT        NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_by  TEXT        NOT NULL DEFAULT '',
    completed_at  TIMESTAMPTZ,
    CHECK ((state = 'COMPLETED') = (completed_at IS NOT NULL))
);

CREATE TABLE inspection_items (
    id            UUID PRIMARY KEY,
    inspection_id UUID        NOT NULL REFERENCES inspections (id),
    position      INTEGER     NOT NULL,
    section       TEXT        NOT NULL,
    label         TEXT        NOT NULL,
    rating        TEXT        CHECK (rating IN ('OK', 'ADVISE', 'URGENT')),
    note          TEXT        NOT NULL DEFAULT '',
    rated_by      TEXT        NOT NULL DEFAULT '',
    rated_at      TIMESTAMPTZ,
    -- The PROPOSED job made from the item; removing the job lets the item propose again.
    job_id        UUID        REFERENCES jobs (id) ON DELETE SET NULL,
    CONSTRAINT inspection_items_position UNIQUE (inspection_id, position)
);

-- Photos as stored: re-encoded JPEG without metadata, never the upload itself.
CREATE TABLE inspection_photos (
    id           UUID PRIMARY KEY,
    item_id      UUID        NOT NULL REFERENCES inspection_items (id),
    content_type TEXT        NOT NULL,
    width        INTEGER     NOT NULL,
    height       INTEGER     NOT NULL,
    content      BYTEA       NOT NULL,
    added_by     TEXT        NOT NULL,
    added_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX inspection_photos_item ON inspection_photos (item_id, added_at, id);

-- The multi-point inspection every garage starts with; owners edit it or add their own.
INSERT INTO inspection_templates (id, name, is_default, items, updated_by) VALUES (
    '0193a7c0-0000-7000-8000-000000000001',
    'Multi-point inspection',
    true,
    '[
      {"section": "Tyres and wheels", "label": "Front left tyre: tread and condition"},
      {"section": "Tyres and wheels", "label": "Front right tyre: tread and condition"},
      {"section": "Tyres and wheels", "label": "Rear left tyre: tread and condition"},
      {"section": "Tyres and wheels", "label": "Rear right tyre: tread and condition"},
      {"section": "Tyres and wheels", "label": "Tyre pressures"},
      {"section": "Brakes", "label": "Front brake pads and discs"},
      {"section": "Brakes", "label": "Rear brake pads, discs or drums"},
      {"section": "Brakes", "label": "Brake fluid"},
      {"section": "Under the bonnet", "label": "Engine oil level and condition"},
      {"section": "Under the bonnet", "label": "Coolant level and condition"},
      {"section": "Under the bonnet", "label": "Drive belts"},
      {"section": "Under the bonnet", "label": "Battery and terminals"},
      {"section": "Under the bonnet", "label": "Air filter"},
      {"section": "Lights and visibility", "label": "Headlights, indicators and brake lights"},
      {"section": "Lights and visibility", "label": "Wiper blades and washer fluid"},
      {"section": "Lights and visibility", "label": "Windscreen"},
      {"section": "Underside", "label": "Suspension and steering joints"},
      {"section": "Underside", "label": "Shock absorbers"},
      {"section": "Underside", "label": "Exhaust system"},
      {"section": "Underside", "label": "Oil or fluid leaks"}
    ]',
    'system'
);
