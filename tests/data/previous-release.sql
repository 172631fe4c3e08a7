BEGIN TRANSACTION;
CREATE TABLE advisors (
	id VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	phone VARCHAR NOT NULL, 
	teams JSON NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "advisors" VALUES('A7','Jordan Smith','+16515550199','["general", "hosting"]');
INSERT INTO "advisors" VALUES('A2','Maria Gonzalez','+16515550102','["general"]');
CREATE TABLE call_logs (
	id INTEGER NOT NULL, 
	call_sid VARCHAR NOT NULL, 
	case_number VARCHAR, 
	caller VARCHAR NOT NULL, 
	contact_id VARCHAR, 
	district_id VARCHAR, 
	menu_path VARCHAR NOT NULL, 
	product VARCHAR, 
	outage BOOLEAN NOT NULL, 
	advisors_tried JSON NOT NULL, 
	answered_by VARCHAR, 
	queue_wait_seconds FLOAT, 
	talk_seconds INTEGER, 
	status VARCHAR NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	recording_url TEXT, 
	team VARCHAR, 
	priority VARCHAR, 
	details JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(case_number) REFERENCES cases (number)
);
INSERT INTO "call_logs" VALUES(1,'CAd3496e94bb7298ac1fdb4686d2188e63','2024117','+16125550101','5001','D100','1>2024117','campus',0,'["A7"]','A7',NULL,60,'answered','2026-11-24 16:00:00.189000','2026-11-24 16:00:00.369000',NULL,'general','medium','{"call_status": "completed", "verified": true, "verified_by_pin": false, "after_hours": false, "handover": false, "abandoned": false}');
INSERT INTO "call_logs" VALUES(2,'CA4e6bda7a4f20d3f1d9e63bf6d838efff','2024118','+16125550101','5001','D100','2',NULL,0,'["A2"]','A2',NULL,60,'answered','2026-11-24 16:00:00.378000','2026-11-24 16:00:00.392000',NULL,'general','medium','{"call_status": "completed", "verified": true, "verified_by_pin": false, "after_hours": false, "handover": false, "abandoned": false}');
INSERT INTO "call_logs" VALUES(3,'CA09ce2f3e638f1c2ec050cb3c6c6c82f7','2024119','+16125550101','5001','D100','8',NULL,1,'["A7"]','A7',NULL,60,'answered','2026-11-24 16:00:00.394000','2026-11-24 16:00:00.404000',NULL,'hosting','critical','{"call_status": "completed", "verified": true, "verified_by_pin": false, "after_hours": false, "handover": false, "abandoned": false}');
INSERT INTO "call_logs" VALUES(4,'CA1b706aebcb42816eacef08a3c92a7b33','2024120','+19525550177',NULL,NULL,'8',NULL,1,'["A7"]','A7',NULL,60,'answered','2026-11-24 16:00:00.408000','2026-11-24 16:00:00.426000',NULL,'hosting','critical','{"call_status": "completed", "verified": false, "verified_by_pin": false, "after_hours": false, "handover": true, "abandoned": false}');
INSERT INTO "call_logs" VALUES(5,'CA7bcbb7404acaad1f4cce059fbee69f8d','2024117','+19525550188','5001','D100','1>2024117','campus',0,'["A7"]','A7',NULL,60,'answered','2026-11-24 16:00:00.431000','2026-11-24 16:00:00.465000',NULL,'general','medium','{"call_status": "completed", "verified": true, "verified_by_pin": true, "after_hours": false, "handover": false, "abandoned": false}');
CREATE TABLE cases (
	number VARCHAR NOT NULL, 
	district_id VARCHAR, 
	owner_id VARCHAR, 
	status VARCHAR NOT NULL, 
	priority VARCHAR NOT NULL, 
	product VARCHAR NOT NULL, 
	needs_handover BOOLEAN NOT NULL, 
	outage BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (number), 
	FOREIGN KEY(district_id) REFERENCES districts (id), 
	FOREIGN KEY(owner_id) REFERENCES advisors (id)
);
INSERT INTO "cases" VALUES('2024117','D100','A7','open','medium','campus',0,0,'2026-11-24 16:00:00.093684');
INSERT INTO "cases" VALUES('2024118','D100','A2','new','medium','campus',0,0,'2026-11-24 16:00:00.530158');
INSERT INTO "cases" VALUES('2024119','D100','A7','new','critical','campus',0,1,'2026-11-24 16:00:00.546244');
INSERT INTO "cases" VALUES('2024120',NULL,'A7','new','critical','campus',1,1,'2026-11-24 16:00:00.560697');
CREATE TABLE contacts (
	id VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	district_id VARCHAR NOT NULL, 
	phone VARCHAR NOT NULL, 
	pin_hash VARCHAR NOT NULL, 
	last_active DATE, 
	deactivated BOOLEAN NOT NULL, 
	flagged_inactive_on DATE, 
	PRIMARY KEY (id), 
	FOREIGN KEY(district_id) REFERENCES districts (id)
);
INSERT INTO "contacts" VALUES('5001','Pat Lee','D100','+16125550101','scrypt$df0c1a801bc9939871136ad3e50b0659$ec7fa5943d6cca8ce560bc814782681ac4e47f2d4566d3b427f13e907b7002e3','2026-11-24',0,NULL);
CREATE TABLE districts (
	id VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	hosted BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "districts" VALUES('D100','Lakeview Public Schools',1);
CREATE TABLE schema_version (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "schema_version" VALUES(1,1);
CREATE INDEX ix_contacts_district_id ON contacts (district_id);
CREATE UNIQUE INDEX ix_contacts_phone ON contacts (phone);
CREATE INDEX ix_cases_district_id ON cases (district_id);
CREATE UNIQUE INDEX ix_call_logs_call_sid ON call_logs (call_sid);
CREATE INDEX ix_call_logs_case_number ON call_logs (case_number);
COMMIT;
